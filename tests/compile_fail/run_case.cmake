# Compiles one must-not-compile case and checks that
#  - the compiler rejects it,
#  - its output matches every regular expression in EXPECT (a ;-list),
#  - exactly one error is reported (the cascade stopper works).
execute_process(
  COMMAND ${COMPILER} -std=c++20 -fsyntax-only -DXTENSOR_USE_XSIMD -I${INCLUDE_DIR} ${SOURCE}
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
set(all "${out}${err}")
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
foreach(re IN LISTS EXPECT)
  if(NOT all MATCHES "${re}")
    message(FATAL_ERROR "expected /${re}/ in the compiler output:\n${all}")
  endif()
endforeach()
string(REGEX MATCHALL "error: " errors "${all}")
list(LENGTH errors n)
if(NOT n EQUAL 1)
  message(FATAL_ERROR "expected exactly one error, got ${n}:\n${all}")
endif()
message(STATUS "ok: ${SOURCE}")
