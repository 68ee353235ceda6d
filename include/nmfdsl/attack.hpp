#pragma once
/// @file attack.hpp
/// Umbrella header of the robustness module (namespace nmfdsl::attack): the classifier adapter, random noise,
/// PGD, APGD (CE and targeted DLR, in AutoAttack's order), the Square attack, and population statistics for
/// networks that normalise with batch statistics. Core only: no I/O, no
/// dependencies beyond the core's.
#include "attack/apgd.hpp"
#include "attack/classifier.hpp"
#include "attack/noise.hpp"
#include "attack/pgd.hpp"
#include "attack/population.hpp"
#include "attack/square.hpp"
