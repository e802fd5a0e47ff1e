#!/usr/bin/env bash
# A fresh azd environment on the runner, filled from the job's environment: every name in $SETTINGS whose value is
# not empty is set (an empty one is left out, so the Bicep default applies). Values travel as variables and are
# never evaluated by the shell, so `$` and backticks in them (a client secret) stay as they are.
set -euo pipefail
azd env new "$AZURE_ENV_NAME" --no-prompt --location "$AZURE_LOCATION" --subscription "$AZURE_SUBSCRIPTION_ID" \
  || azd env select "$AZURE_ENV_NAME"
for name in $SETTINGS; do
  value="${!name:-}"
  if [ -n "$value" ]; then
    azd env set "$name" "$value"
  fi
done
