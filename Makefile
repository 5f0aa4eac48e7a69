# Two commands take a fresh clone anywhere: `make run` and `make test`.
# Each installs only what it needs: `make run` what serving needs, `make
# test` and `make bench` their own tools besides.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet -c constraints.txt
NPM_CI := npm ci --no-audit --no-fund
export FLASK_APP := app

.PHONY: install install-test install-bench test-packages migrate run serve bench test lint format clean

install: $(VENV)/.run node_modules/.run  ## what serving needs
install-test: $(VENV)/.test node_modules/.test
install-bench: $(VENV)/.bench benchmarks/node_modules/.installed benchmarks/yardstick/node_modules/.installed

$(VENV)/.run: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(PIP) -e .
	touch $@

$(VENV)/.test: $(VENV)/.run
	$(PIP) -e '.[test]'
	touch $@

$(VENV)/.bench: $(VENV)/.run
	$(PIP) -e '.[bench]'
	touch $@

# The browser's socket.io client only; `npm ci` starts from an empty
# node_modules, so installing for serving drops the test tools' stamp too.
node_modules/.run: package.json package-lock.json
	$(NPM_CI) --omit=dev
	touch $@

node_modules/.test: package.json package-lock.json
	$(NPM_CI)
	touch node_modules/.run $@

benchmarks/node_modules/.installed: benchmarks/package.json benchmarks/package-lock.json
	cd benchmarks && $(NPM_CI)
	touch $@

benchmarks/yardstick/node_modules/.installed: benchmarks/yardstick/package.json benchmarks/yardstick/package-lock.json
	cd benchmarks/yardstick && $(NPM_CI)
	touch $@

# Tests drive Debian's Chromium (with fonts for Korean and emoji) and nginx;
# install them when missing and we are root on Debian. PostgreSQL and Redis
# are expected on 127.0.0.1 (tests skip without them, and fail under CI).
TEST_PACKAGES := chromium fonts-noto-cjk fonts-noto-color-emoji nginx-light

test-packages:
	@dpkg -s $(TEST_PACKAGES) >/dev/null 2>&1 || \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq $(TEST_PACKAGES) >/dev/null; \
	else \
		echo "Install Debian's $(TEST_PACKAGES) for the browser and nginx tests"; \
	fi

migrate: install  ## bring the database schema up to date
	$(BIN)/flask db upgrade

run: migrate  ## serve the chat on HOST:PORT (SQLite, one process)
	$(BIN)/python wsgi.py

serve: export CHAT_ENV = production
serve: migrate  ## production server: gunicorn + gevent-websocket, one process
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

bench: install install-bench  ## benchmarks against the Node socket.io yardstick
	$(BIN)/python benchmarks/run.py --rounds 3

lint: install-test  ## formatter and linters
	$(BIN)/black --check --quiet .
	$(BIN)/flake8
	node_modules/.bin/eslint .

format: install-test
	$(BIN)/black .

test: install install-test install-bench lint test-packages  ## every test, with coverage of app/
	$(BIN)/pytest --cov --cov-report=term

clean:
	rm -rf $(VENV) node_modules benchmarks/node_modules benchmarks/yardstick/node_modules instance .pytest_cache .coverage .coverage.*
