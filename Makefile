# Two entry points a newcomer needs; both set up .venv and build csrc/ first (idempotent).
.PHONY: setup demo test
setup:
	bash scripts/bootstrap.sh
	bash scripts/build_csrc.sh
	bash scripts/build_sample.sh
	bash scripts/build_trt.sh
demo: setup
	.venv/bin/clean-deploy demo --out demo_out
test: setup
	.venv/bin/python -m pytest -q -n 2 --dist loadgroup tests
