# Builds tests/cpu/probe.cpp for AVX2 + FMA and runs it under qemu-user, emulating a CPU that has those instruction
# sets (Haswell: the probe must run) and one that has not (Westmere: it must stop at start, with exit status 1 and
# one line naming AVX).
execute_process(COMMAND ${COMPILER} -std=c++20 -O2 -mavx2 -mfma -I${INCLUDE_DIR} ${SOURCE} -o ${WORK_DIR}/cpu_probe
                RESULT_VARIABLE rc ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "building the probe failed:\n${err}")
endif()
execute_process(COMMAND ${QEMU} -cpu Haswell ${WORK_DIR}/cpu_probe RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_QUIET)
if(NOT rc EQUAL 0 OR NOT out MATCHES "probe started")
  message(FATAL_ERROR "on an emulated Haswell the AVX2 probe should run; exit ${rc}, output: ${out}")
endif()
execute_process(COMMAND ${QEMU} -cpu Westmere ${WORK_DIR}/cpu_probe RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
string(REGEX MATCHALL "nmfdsl: " lines "${err}")  # one message (it contains a ";", so no list of lines)
list(LENGTH lines n)
if(NOT rc EQUAL 1 OR out MATCHES "probe started" OR NOT n EQUAL 1
   OR NOT err MATCHES "nmfdsl: this program was compiled for AVX \\(e.g. -march=native on another machine\\), which this CPU lacks")
  message(FATAL_ERROR "on an emulated Westmere the probe must stop at start naming AVX; exit ${rc}, stdout: ${out}, stderr: ${err}")
endif()
message(STATUS "ok: the start-up check stops an AVX2 build on a CPU without AVX")
