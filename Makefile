# The README's two commands. Both first install whatever Debian packages are missing.
#   make demo   build (native, Release) and run the main job: train CNMF+1x1 on Fashion-MNIST (3 epochs, ~4 min)
#   make test   build (portable, Release, checked) and run every test through CTest
#   make test-native   the unit tests once more, built for this CPU (what CI runs after make test)
JOBS ?= 2

.PHONY: deps demo tables test test-native test-arch test-sanitize test-tsan bench clean

deps:
	bash scripts/install-deps.sh

demo: deps
	cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_BUILD_TESTS=OFF
	cmake --build build/native -j$(JOBS) --target nmfdsl-train
	./build/native/examples/nmfdsl-train --model cnmf1x1 --data fashion-mnist --epochs 3 --out runs/demo

tables: deps
	cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_BUILD_TESTS=OFF
	cmake --build build/native -j$(JOBS) --target nmfdsl-demo
	./build/native/examples/nmfdsl-demo

test: deps
	cmake -S . -B build/test -DCMAKE_BUILD_TYPE=Release -DNMFDSL_CHECKED=ON
	cmake --build build/test -j$(JOBS)
	ctest --test-dir build/test --output-on-failure -j$(JOBS)

# The unit tests again, compiled for this machine's CPU (-march=native): they exercise the AVX2 / AVX-512 kernel
# paths that the portable build of `make test` cannot reach. Prints the instruction sets and the CPU first.
test-native: deps
	cmake -S . -B build/native-tests -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_CHECKED=ON \
	  -DNMFDSL_BUILD_EXAMPLES=OFF -DNMFDSL_BUILD_BENCHMARKS=OFF
	cmake --build build/native-tests -j$(JOBS) --target nmfdsl_unit_tests
	./build/native-tests/tests/nmfdsl_unit_tests --order rand --rng-seed 1

# The unit tests built for another instruction set this CPU also runs, e.g. `make test-arch ARCH=x86-64-v3` (AVX2 +
# FMA) on an AVX-512 machine, so that the AVX2 kernel paths are tested there too.
ARCH ?= x86-64-v3
test-arch: deps
	cmake -S . -B build/arch-$(ARCH)-tests -DCMAKE_BUILD_TYPE=Release -DNMFDSL_ARCH=$(ARCH) -DNMFDSL_CHECKED=ON \
	  -DNMFDSL_BUILD_EXAMPLES=OFF -DNMFDSL_BUILD_BENCHMARKS=OFF
	cmake --build build/arch-$(ARCH)-tests -j$(JOBS) --target nmfdsl_unit_tests
	./build/arch-$(ARCH)-tests/tests/nmfdsl_unit_tests --order rand --rng-seed 1

# The unit tests under AddressSanitizer + UndefinedBehaviorSanitizer, and under ThreadSanitizer (the thread pool and
# every parallel kernel), with line tables. SAN_ARCH picks the instruction set of the sanitizer build: native
# (default) or a -march value, e.g. `make test-sanitize SAN_ARCH=x86-64-v3` (AVX2 + FMA) on an AVX-512 machine,
# which is how CI tests the AVX2 kernel paths there. Optimisation: -Og under ASan + UBSan (its CI stage, build and run
# on 2 cores, took 356 s against 576 s at -O1; the run alone 124 s against 116 s), -O1 under TSan (its run took
# 344 s at -Og).
SAN_ARCH ?= native
SAN_ISA = $(if $(filter native,$(SAN_ARCH)),-DNMFDSL_NATIVE=ON,-DNMFDSL_ARCH=$(SAN_ARCH))
SANITIZE_FLAGS = -DCMAKE_BUILD_TYPE=Release -DNMFDSL_CHECKED=ON -DNMFDSL_BUILD_EXAMPLES=OFF \
  -DNMFDSL_BUILD_BENCHMARKS=OFF
test-sanitize: deps
	cmake -S . -B build/asan-$(SAN_ARCH) $(SANITIZE_FLAGS) "-DCMAKE_CXX_FLAGS_RELEASE=-Og -g1 -fno-omit-frame-pointer" \
	  $(SAN_ISA) "-DCMAKE_CXX_FLAGS=-fsanitize=address,undefined \
	  -fno-sanitize-recover=undefined" -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=address,undefined
	cmake --build build/asan-$(SAN_ARCH) -j$(JOBS) --target nmfdsl_unit_tests
	LSAN_OPTIONS="suppressions=$(CURDIR)/tests/lsan.supp print_suppressions=0" \
	  ./build/asan-$(SAN_ARCH)/tests/nmfdsl_unit_tests --order rand --rng-seed 1

test-tsan: deps
	cmake -S . -B build/tsan $(SANITIZE_FLAGS) "-DCMAKE_CXX_FLAGS_RELEASE=-O1 -g1 -fno-omit-frame-pointer" \
	  -DNMFDSL_NATIVE=ON -DCMAKE_CXX_FLAGS=-fsanitize=thread \
	  -DCMAKE_EXE_LINKER_FLAGS=-fsanitize=thread
	cmake --build build/tsan -j$(JOBS) --target nmfdsl_unit_tests
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" NMFDSL_THREADS=3 \
	  ./build/tsan/tests/nmfdsl_unit_tests --order rand --rng-seed 1

bench: deps
	cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_BUILD_TESTS=OFF
	cmake --build build/native -j$(JOBS) --target nmfdsl_bench
	./build/native/benchmarks/nmfdsl_bench --benchmark_min_time=0.2

clean:
	rm -rf build
