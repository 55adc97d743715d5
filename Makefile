# robot_rl: `make demo` (the whole pipeline over DDS: expert, recorder, diffusion policy,
# steering, residual RL; a summary table) and `make test` (the suite, the colcon build included).
# Both set up what they need first, idempotently: Debian libraries when missing, a .venv with
# the pinned Python deps (torch from the CPU wheel on disk, never one pip chooses), the PyPI
# ROS 2 wheels unless a ROS 2 distro is sourced, and this package in editable mode.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
VPY := $(VENV)/bin/python
PIP := $(VPY) -m pip
STAMP := $(VENV)/.robot_rl-setup
TORCH_VERSION := 2.13.0
TORCH_WHEEL_DIR ?= /opt/wheels
# Extra pip flags for torch when no wheel is on disk, e.g. your CPU-only index (keep torch pinned).
TORCH_PIP_ARGS ?=
DEB_PACKAGES := libusb-1.0-0 libegl1 libgl1 colcon python3-colcon-ros
PYTEST_ARGS ?=
DEMO_ARGS ?=

export ROS_AUTOMATIC_DISCOVERY_RANGE := LOCALHOST
export MUJOCO_GL := egl
export PYTHONUNBUFFERED := 1

# A sourced ROS 2 distro whose rclpy the system python can import: use it instead of the wheels.
ROS_SYSTEM := $(shell [ -n "$${ROS_DISTRO:-}" ] && $(PYTHON) -c 'import rclpy' >/dev/null 2>&1 && echo yes || echo no)

.PHONY: help setup test demo clean-venv

help:
	@echo "make demo   - the pipeline end to end over DDS: expert, recorder, diffusion policy, V-GPS, residual RL (~13 min)"
	@echo "make test   - the test suite (unit + integration tests with real nodes, the colcon build)"
	@echo "make setup  - only the environment (.venv, pinned deps, Debian libraries)"

setup: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt setup.py setup.cfg package.xml
	@missing=""; \
	if command -v dpkg >/dev/null 2>&1; then \
	  for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	else echo "setup: no dpkg; make sure$(foreach p,$(DEB_PACKAGES), $(p)) are installed"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo -n"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi
	@want_system=$(ROS_SYSTEM); \
	if [ -f $(VENV)/pyvenv.cfg ]; then \
	  has_system=$$(grep -q 'include-system-site-packages = true' $(VENV)/pyvenv.cfg && echo yes || echo no); \
	  if [ "$$has_system" != "$$want_system" ]; then \
	    echo "setup: recreating $(VENV) (system site-packages: $$has_system -> $$want_system)"; rm -rf $(VENV); \
	  fi; \
	fi; \
	if [ ! -x $(VPY) ]; then \
	  if [ "$$want_system" = yes ]; then \
	    echo "setup: ROS 2 $$ROS_DISTRO is sourced: $(VENV) sees its rclpy (--system-site-packages)"; \
	    $(PYTHON) -m venv --system-site-packages $(VENV); \
	  else $(PYTHON) -m venv $(VENV); fi; \
	fi
	@if $(VPY) -c 'import torch, sys; sys.exit(not torch.__version__.startswith("$(TORCH_VERSION)"))' 2>/dev/null; then \
	  echo "setup: torch $(TORCH_VERSION) already installed"; \
	else \
	  wheel=$$(ls $(TORCH_WHEEL_DIR)/torch-$(TORCH_VERSION)+cpu-*.whl 2>/dev/null | head -n1 || true); \
	  if [ -n "$$wheel" ]; then $(PIP) install -q "$$wheel"; \
	  else $(PIP) install -q "torch==$(TORCH_VERSION)" $(TORCH_PIP_ARGS); fi; \
	fi
	$(PIP) install -q -r requirements.txt
	@if [ "$(ROS_SYSTEM)" = yes ]; then echo "setup: skipping requirements-ros.txt (using ROS 2 $$ROS_DISTRO)"; \
	else $(PIP) install -q -r requirements-ros.txt; fi
	$(PIP) install -q "setuptools>=64"
	$(PIP) install -q --no-deps --no-build-isolation -e .
	@$(VPY) -c 'import rclpy, mujoco, torch, robot_rl; print("setup: ok (torch", torch.__version__ + ", mujoco", mujoco.__version__ + ")")'
	@touch $@

test: setup
	$(VPY) -m pytest $(PYTEST_ARGS)

demo: setup
	$(VPY) -m robot_rl.demo $(DEMO_ARGS)

clean-venv:
	rm -rf $(VENV)
