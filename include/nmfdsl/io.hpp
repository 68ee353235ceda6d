#pragma once
/// @file io.hpp
/// Umbrella header of the I/O part (target nmfdsl::io, which links zlib, libpng and cairo): the data readers (IDX,
/// CIFAR-10, .npy) and augmentation, checkpoints, NumPy .npy arrays, PNG pictures, plots and the Trainer that uses
/// them. Includes the core.
#include "data/augment.hpp"
#include "data/dataset.hpp"
#include "io/checkpoint.hpp"
#include "io/npy.hpp"
#include "io/plot.hpp"
#include "io/png.hpp"
#include "nmfdsl.hpp"
#include "train/trainer.hpp"
