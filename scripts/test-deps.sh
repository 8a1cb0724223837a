#!/usr/bin/env bash
# Installs the servers the integration tests run for real when they are
# missing: ngircd (IRC), MediaWiki 1.39 with PHP (edit and enrichment tests).
# Idempotent; needs root (apt-get) only when something is missing.
set -euo pipefail
need=()
command -v ngircd >/dev/null 2>&1 || need+=(ngircd)
[ -f /usr/share/mediawiki/maintenance/install.php ] || need+=(mediawiki)
command -v php >/dev/null 2>&1 || need+=(php-cli)
php -m 2>/dev/null | grep -qi '^pdo_sqlite$' || need+=(php-sqlite3)
php -m 2>/dev/null | grep -qi '^intl$' || need+=(php-intl)
php -m 2>/dev/null | grep -qi '^mbstring$' || need+=(php-mbstring)
php -m 2>/dev/null | grep -qi '^xml$' || need+=(php-xml)
# The patroller feed's browser test (actions/feed) drives Debian's chromium.
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
if [ ${#need[@]} -gt 0 ]; then
  echo "test-deps: installing ${need[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "test-deps: ok (ngircd $(command -v ngircd), php $(php -r 'echo PHP_VERSION;'))"
