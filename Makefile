.PHONY: demo test bench venv lock

venv:
	scripts/setup-venv

demo:
	scripts/demo

test:
	scripts/test

bench:
	scripts/bench

lock:
	scripts/lock
