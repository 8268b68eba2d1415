# Environment for running offline: no telemetry, no hub downloads. Sourced by the scripts.
export DVC_NO_ANALYTICS=1
export PREFECT_SERVER_ANALYTICS_ENABLED=false
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
export HF_HUB_DISABLE_TELEMETRY=1
export GLOG_minloglevel=${GLOG_minloglevel:-2}
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
