#!/bin/sh
# create-secret.sh — make the dev overlay's Secret `agora-datastores` in the cluster, with
# random passwords. Values never touch git; re-running keeps the existing Secret.
#
#   deployments/k8s/overlays/dev/create-secret.sh        (needs kubectl and a current context)
set -eu
NS=${NAMESPACE:-agora}
if kubectl -n "$NS" get secret agora-datastores >/dev/null 2>&1; then
  echo "secret $NS/agora-datastores exists; delete it first to rotate"; exit 0
fi
pw() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }   # URL-safe: it goes into URLs
PG=$(pw) MQ=$(pw) KEY=$(pw)$(pw)
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl -n "$NS" create secret generic agora-datastores \
  --from-literal=POSTGRES_PASSWORD="$PG" \
  --from-literal=RABBITMQ_PASSWORD="$MQ" \
  --from-literal=AGORA_POSTGRES_URL="postgresql://agora:$PG@postgres:5432/agora" \
  --from-literal=AGORA_AMQP_URL="amqp://agora:$MQ@rabbitmq:5672/%2F" \
  --from-literal=AGORA_MONGO_URL="mongodb://mongodb-0.mongodb:27017/?replicaSet=rs0" \
  --from-literal=AGORA_CASSANDRA_CONTACT_POINTS="cassandra" \
  --from-literal=AGORA_SERVICE_API_KEY="$KEY"
echo "created secret $NS/agora-datastores"
