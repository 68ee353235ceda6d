#pragma once
/// @file config.hpp
/// Compile-time switches.
///  - NMFDSL_CHECKED (0/1): runtime checks of numeric domains, e.g. non-finite or negative values reaching an NMF
///    layer throw nmfdsl::numeric_error. The CMake option NMFDSL_CHECKED=ON defines it; the test build has it on.
#ifndef NMFDSL_CHECKED
#define NMFDSL_CHECKED 0
#endif
