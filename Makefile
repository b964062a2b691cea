# The two commands of the README: `make demo` and `make test`. Both set up what they need first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-all venv system stubs bench clean help

help:
	@echo "make demo      start the services, send a real text, image and speech clip at two SNRs, stop"
	@echo "make test      run the test suite on two workers (slow and GPU tests skipped; make test-all runs the slow ones, serially)"
	@echo "make bench     the benchmarks (service path vs in-process, channel throughput, LDPC, MLLM KV cache, load and faults, TLS vs plaintext, batched vs unbatched, text prior vs argmax, text copies vs once, VQA by program vs end to end)"
	@echo "make stubs     regenerate the gRPC stubs from protos/"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build on local disk (an unpinned torch pulls a multi-GB CUDA build)
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

system:
	@bash scripts/setup_system.sh

stubs: venv
	$(PY) scripts/gen_protos.py

demo: venv system
	$(PY) -m unitocom.cli demo

# two workers, a test file each at a time (its module fixtures set up once): the suite mostly waits on the services
# it starts, so serial it left one of CI's two cores idle
test: venv system
	$(PY) -m pytest -q -n 2 --dist loadfile

test-all: venv system
	$(PY) -m pytest -q -m "not gpu"

bench: venv system
	$(PY) bench/bench_services.py
	$(PY) bench/bench_channel.py
	$(PY) bench/bench_ldpc.py
	$(PY) bench/bench_mllm.py
	$(PY) bench/bench_load.py --spawn --scenarios baseline,kill-basestation,stop-channel
	$(PY) bench/bench_tls.py
	$(PY) bench/bench_batching.py
	@for b in bench_text_prior bench_text_copies bench_programs; do \
	  if [ -f data/tiny/manifest.json ]; then $(PY) bench/$$b.py || exit 1; \
	  else echo "bench/$$b.py skipped: it reads data/tiny (unitocom data make --preset tiny)"; fi; done

clean:
	rm -rf $(VENV) .pytest_cache
