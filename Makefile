# Two commands take a fresh clone anywhere: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := app

.PHONY: install test-packages migrate run serve bench test lint format clean

install: $(VENV)/.installed node_modules/.installed benchmarks/node_modules/.installed

$(VENV)/.installed: setup.cfg pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
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

benchmarks/node_modules/.installed: benchmarks/package.json benchmarks/package-lock.json
	cd benchmarks && npm ci --no-audit --no-fund
	touch $@

migrate: install  ## bring the database schema up to date
	$(BIN)/flask db upgrade

run: migrate  ## serve the chat on HOST:PORT (SQLite, one process)
	$(BIN)/python wsgi.py

serve: export CHAT_ENV = production
serve: migrate  ## production server: gunicorn + gevent-websocket, one process
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

bench: install  ## benchmarks against the Node socket.io yardstick
	$(BIN)/python benchmarks/run.py --rounds 3

lint: install  ## formatter and linter
	$(BIN)/black --check --quiet .
	$(BIN)/flake8

format: install
	$(BIN)/black .

test: install lint test-packages  ## every test
	$(BIN)/pytest

clean:
	rm -rf $(VENV) node_modules benchmarks/node_modules benchmarks/.peer instance .pytest_cache
