# Two entry points a newcomer needs; both set up .venv first (idempotent).
.PHONY: setup demo test
setup:
	bash scripts/bootstrap.sh
demo: setup
	.venv/bin/clean-deploy demo --out demo_out
test: setup
	.venv/bin/python -m pytest -q -n 2 tests
