#!/usr/bin/env bash
# Ensures the services Concord needs answer on loopback, installing them from Debian's
# packages when they are missing. Where PostgreSQL (127.0.0.1:5432, trust) and Redis
# (127.0.0.1:6379) already answer, they are used as they are.
#
#   scripts/services.sh core     PostgreSQL and Redis (make demo)
#   scripts/services.sh test     core + versitygw S3 on 127.0.0.1:7070 + Chromium (make test)
#   scripts/services.sh restart-postgres
#                                restarts the PostgreSQL this script starts (the Debian cluster
#                                or the private one), for `concord bench --cold`
#
# It prints the environment for the tests on stdout when asked with `env`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.concord/services
mkdir -p "$STATE"
export PATH=/usr/lib/postgresql/15/bin:$PATH

log() { echo "services: $*" >&2; }

apt_updated=0
apt_install() {
	if [ "$apt_updated" = 0 ]; then
		log "apt-get update"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
		apt_updated=1
	fi
	log "apt-get install $*"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

pg_ok() { psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1; }

ensure_postgres() {
	if command -v psql >/dev/null && pg_ok; then return; fi
	if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
		apt_install postgresql postgresql-client
	fi
	local ver
	ver=$(ls /usr/lib/postgresql | sort -n | tail -1)
	export PATH=/usr/lib/postgresql/$ver/bin:$PATH
	if pg_ok; then return; fi
	# A Debian cluster (created by the package) is started with trust on loopback, as on
	# the machines the project runs on; otherwise a private cluster is made in .concord.
	if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql/$ver/main ]; then
		local hba=/etc/postgresql/$ver/main/pg_hba.conf
		if ! grep -q '^# concord: trust loopback' "$hba"; then
			log "configuring trust auth on loopback in $hba"
			{ echo '# concord: trust loopback'; echo 'local all all trust'; echo 'host all all 127.0.0.1/32 trust'; echo 'host all all ::1/128 trust'; cat "$hba"; } > "$hba.new"
			mv "$hba.new" "$hba"
		fi
		log "starting PostgreSQL cluster $ver/main"
		pg_ctlcluster --skip-systemctl-redirect "$ver" main start >&2 || pg_ctlcluster --skip-systemctl-redirect "$ver" main restart >&2 || true
	fi
	for _ in $(seq 1 30); do pg_ok && return; sleep 0.5; done
	# Fall back to a private cluster on 5432 owned by nobody.
	local d=$STATE/pg
	if [ ! -f "$d/data/PG_VERSION" ]; then
		log "initdb in $d"
		mkdir -p "$d" && chown -R nobody:nogroup "$d" 2>/dev/null || true
		runuser -u nobody -- initdb -D "$d/data" -U postgres --auth=trust -E UTF8 --no-locale >&2
	fi
	log "starting a private PostgreSQL on 127.0.0.1:5432"
	runuser -u nobody -- pg_ctl -D "$d/data" -l "$d/pg.log" -w start -o "-p 5432 -k $d -c listen_addresses=127.0.0.1" >&2
	for _ in $(seq 1 30); do pg_ok && return; sleep 0.5; done
	log "PostgreSQL does not answer on 127.0.0.1:5432"; exit 1
}

redis_ok() { redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; }

ensure_redis() {
	if command -v redis-cli >/dev/null && redis_ok; then return; fi
	if ! command -v redis-server >/dev/null; then apt_install redis-server redis-tools; fi
	log "starting Redis on 127.0.0.1:6379"
	redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
		--dir "$STATE" --logfile "$STATE/redis.log" --pidfile "$STATE/redis.pid" >&2
	for _ in $(seq 1 30); do redis_ok && return; sleep 0.2; done
	log "Redis does not answer on 127.0.0.1:6379"; exit 1
}

VERSITYGW_VERSION=v1.8.0
s3_ok() { (exec 3<>/dev/tcp/127.0.0.1/7070) 2>/dev/null; }

# drop_stale_s3 stops a versitygw on 127.0.0.1:7070 whose posix root no longer exists (the
# checkout that started it was deleted): it still answers on the port but fails every
# request, so it must not be taken for a working S3 server.
drop_stale_s3() {
	local pid dir
	while read -r pid dir; do
		if [ -n "$dir" ] && [ ! -d "$dir" ]; then
			log "stopping versitygw $pid: its root $dir is gone"
			kill "$pid" 2>/dev/null || true
			for _ in $(seq 1 50); do s3_ok || break; sleep 0.1; done
		fi
	done < <(pgrep -af 'versitygw --port 127.0.0.1:7070 posix' | awk '{print $1, $NF}')
}

ensure_s3() {
	local bin=$ROOT/.bin/versitygw
	if [ ! -x "$bin" ]; then
		log "building versitygw $VERSITYGW_VERSION (about 90 s)"
		local tmp; tmp=$(mktemp -d)
		( cd "$tmp" && go mod init scratch >/dev/null 2>&1 && go get github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION >&2 \
			&& GOFLAGS=-buildvcs=false go build -o "$bin" github.com/versity/versitygw/cmd/versitygw >&2 )
		rm -rf "$tmp"
	fi
	drop_stale_s3
	if s3_ok; then return; fi
	mkdir -p "$STATE/s3"
	log "starting versitygw on 127.0.0.1:7070"
	ROOT_ACCESS_KEY=concordtest ROOT_SECRET_KEY=concordtest-secret nohup "$bin" --port 127.0.0.1:7070 posix "$STATE/s3" >"$STATE/versitygw.log" 2>&1 &
	echo $! >"$STATE/versitygw.pid"
	for _ in $(seq 1 50); do s3_ok && return; sleep 0.1; done
	log "versitygw does not answer on 127.0.0.1:7070"; exit 1
}

ensure_chromium() {
	if [ -x /usr/bin/chromium ]; then return; fi
	apt_install chromium fonts-dejavu-core
}

# restart_postgres restarts (fast shutdown) whichever PostgreSQL answers on 5432 that this
# script knows how to start; another server is left alone with an error.
restart_postgres() {
	local ver d=$STATE/pg
	ver=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -1) || true
	export PATH=/usr/lib/postgresql/$ver/bin:$PATH
	if [ -f "$d/data/postmaster.pid" ]; then
		runuser -u nobody -- pg_ctl -D "$d/data" -l "$d/pg.log" -m fast -w restart >&2
	elif command -v pg_ctlcluster >/dev/null && [ -n "$ver" ] && pg_lsclusters -h 2>/dev/null | awk -v v="$ver" '$1 == v && $2 == "main" && $4 == "online" { ok = 1 } END { exit !ok }'; then
		pg_ctlcluster --skip-systemctl-redirect "$ver" main restart -m fast >&2
	else
		log "no PostgreSQL started by this script is running; restart yours yourself"; exit 1
	fi
	for _ in $(seq 1 60); do pg_ok && return; sleep 0.5; done
	log "PostgreSQL does not answer after the restart"; exit 1
}

case "${1:-core}" in
core) ensure_postgres; ensure_redis ;;
test) ensure_postgres; ensure_redis; ensure_s3; ensure_chromium ;;
restart-postgres) restart_postgres ;;
env)
	cat <<ENV
export CONCORD_TEST_DATABASE_URL='postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable'
export CONCORD_TEST_REDIS_URL='redis://127.0.0.1:6379/0'
export CONCORD_TEST_S3_ENDPOINT='127.0.0.1:7070'
export CONCORD_TEST_S3_ACCESS_KEY='concordtest'
export CONCORD_TEST_S3_SECRET_KEY='concordtest-secret'
export CONCORD_TEST_STRICT=1
ENV
	;;
*) echo "usage: $0 core|test|env|restart-postgres" >&2; exit 2 ;;
esac
