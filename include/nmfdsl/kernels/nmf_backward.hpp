#pragma once
/// @file nmf_backward.hpp
/// The three gradients of the NMF inference (kernels/nmf.hpp) with respect to x̂ and W, one header each:
///  - approximate (nmf_backward_approx.hpp): the deep-NMF paper's, through one update at the final h; independent
///    of T in time and memory; the training default.
///  - unrolled (nmf_backward_unrolled.hpp): exact, through all T updates; valid for any T.
///  - implicit (nmf_backward_implicit.hpp): at the fixed point; valid only where the iteration has converged.
#include "nmf_backward_approx.hpp"
#include "nmf_backward_implicit.hpp"
#include "nmf_backward_unrolled.hpp"
