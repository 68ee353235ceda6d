# The README's two commands. Both first install whatever Debian packages are missing.
#   make demo   build (native, Release) and run the main job: train CNMF+1x1 on Fashion-MNIST (3 epochs, ~4 min)
#   make test   build (portable, Release, checked) and run every test through CTest
JOBS ?= 2

.PHONY: deps demo tables test bench clean

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

bench: deps
	cmake -S . -B build/native -DCMAKE_BUILD_TYPE=Release -DNMFDSL_NATIVE=ON -DNMFDSL_BUILD_TESTS=OFF
	cmake --build build/native -j$(JOBS) --target nmfdsl_bench
	./build/native/benchmarks/nmfdsl_bench --benchmark_min_time=0.2

clean:
	rm -rf build
