.PHONY: demo test bench venv

venv:
	scripts/setup-venv

demo:
	scripts/demo

test:
	scripts/test

bench:
	scripts/bench
