"""Names shared by the library, the runner, the operator and the CRD.

One place for them so that the API group, label keys and environment variables cannot
drift apart between the pieces (see docs/architecture.md).
"""

GROUP = "limetask.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "LimeTask"
PLURAL = "limetasks"
SINGULAR = "limetask"
SHORT_NAME = "lt"
# Not "limetask": kubectl resolves a category before a singular name, so with two kinds
# in a category named like the LimeTask singular, `kubectl get limetask NAME` failed
# ("you must specify only one resource"). `kubectl get lime` lists tasks and schedules.
CATEGORY = "lime"
CRD_NAME = f"{PLURAL}.{GROUP}"

LABEL_APP = f"{GROUP}/app"
LABEL_TASK_ID = f"{GROUP}/task-id"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "lime-task-operator"

STATES = ("PENDING", "STARTED", "SUCCESS", "FAILURE")
TERMINAL_STATES = ("SUCCESS", "FAILURE")

TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# kubelet keeps at most 4096 bytes of one container's termination message.
TERMINATION_MESSAGE_LIMIT = 4096
# args + kwargs as compact JSON. They travel in the LimeTask, the Job and the pod's
# environment; tasks should pass references to large data, not the data.
MAX_ARGUMENTS_BYTES = 32 * 1024

ENV_TASK = "LIME_TASK"
ENV_NAMESPACE = "LIME_TASK_NAMESPACE"
ENV_APP_FACTORY = "LIME_TASK_APP_FACTORY"
ENV_TERMINATION_PATH = "LIME_TASK_TERMINATION_PATH"
ENV_BROKER_URL = "LIME_TASK_BROKER_URL"
ENV_EXCHANGE = "LIME_TASK_EXCHANGE"
DEFAULT_EXCHANGE = "lime_task"

# LimeTaskSchedule (crds/limetaskschedule.yaml, docs/schedules.md; issue #15).
SCHEDULE_KIND = "LimeTaskSchedule"
SCHEDULE_PLURAL = "limetaskschedules"
SCHEDULE_SHORT_NAME = "lts"
SCHEDULE_CRD_NAME = f"{SCHEDULE_PLURAL}.{GROUP}"
# On every task of a schedule: the schedule's name (what its tasks are selected by).
LABEL_SCHEDULE = f"{GROUP}/schedule"
# The scheduled time of a run (RFC 3339, UTC), as CronJob's
# batch.kubernetes.io/cronjob-scheduled-timestamp; absent on run-now tasks.
ANNOTATION_SCHEDULED_AT = f"{GROUP}/scheduled-at"
# "manual" on a task started by run-now, as `kubectl create job --from=cronjob/x` marks
# its Job (cronjob.kubernetes.io/instantiate: manual).
ANNOTATION_INSTANTIATE = f"{GROUP}/instantiate"
