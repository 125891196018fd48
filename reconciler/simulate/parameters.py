"""The simulation's constants in one place, each with its public source or marked an assumption.

Sources: ../shared/ANCHORS.md (facts gathered from AWS / GitHub documentation and the issue
trackers of actions-runner-controller and terraform-aws-github-runner), the controller's own
defaults (`reconciler.controller.loop.ControllerSettings`) and AWS instance specifications.
docs/simulator.md explains how each one enters the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class InstanceType:
    """What an EC2 instance offers to ECS tasks (CPU units, MiB after the agent's share)."""

    name: str
    cpu: int
    memory: int

    @property
    def vcpus(self) -> float:
        """vCPUs (1024 CPU units each)."""
        return self.cpu / 1024


#: instance type per capacity provider of specs/ (AWS specs; ~3% memory kept for the agent/OS)
INSTANCE_TYPES = {
    "linux-x64-large": InstanceType("m6i.4xlarge", 16384, 63_400),
    "linux-x64": InstanceType("m6i.2xlarge", 8192, 31_600),
    "linux-arm64": InstanceType("m7g.xlarge", 4096, 15_700),
}
DEFAULT_INSTANCE_TYPE = InstanceType("m6i.2xlarge", 8192, 31_600)

#: on-demand Linux USD per hour in ap-northeast-1 (Tokyo), the trace's region. Assumption:
#: list prices as published on the AWS EC2 pricing page when this was written (m6i.large
#: $0.124, m7g.large $0.1047, scaled by size); pass current ones (`--price TYPE=USD`)
INSTANCE_PRICES_USD = {
    "m6i.4xlarge": 0.992,
    "m6i.2xlarge": 0.496,
    "m6i.xlarge": 0.248,
    "m7g.xlarge": 0.2094,
}
#: price of a vCPU-hour for instance types without a listed price (tagr's one-job instances:
#: sized to the task, priced like m6i, $0.062 per vCPU-hour in Tokyo)
VCPU_HOUR_USD = 0.062


@dataclass(frozen=True)
class SimulationParameters:
    """Timings (seconds) and limits of the model of ECS, GitHub and the compared systems."""

    # --- EC2 / ECS -------------------------------------------------------------------------
    #: Auto Scaling group reaction to a new desired capacity until the instance is launching
    #: (assumption: a few seconds of API and placement work)
    asg_launch_s: float = 10.0
    #: instance boot to ECS agent registration: "reported around 40 s" (ANCHORS, ECS limits)
    instance_boot_s: float = 40.0
    #: runner + dind image pull on an instance that never ran the pool (assumption: ~1 GB of
    #: layers at ~50 MB/s from ECR/GHCR)
    image_pull_cold_s: float = 20.0
    #: pull when the image is already cached on the instance (layer check only; assumption)
    image_pull_warm_s: float = 2.0
    #: container start, dind health check passing (task definition: 5 s interval; assumption)
    task_start_s: float = 8.0
    #: ephemeral runner exit after its job until ECS frees the task's CPU and memory
    task_stop_s: float = 5.0
    #: ECS managed scaling: metric published once a minute (ANCHORS)
    managed_metric_period_s: float = 60.0
    #: CloudWatch target-tracking alarm: one 1-minute datapoint past the threshold, evaluated
    #: after the period closes (AWS target tracking; assumption for the extra period)
    managed_alarm_delay_s: float = 60.0
    #: ECS managed scaling needs 15 minutes of data below target before scaling in (ANCHORS)
    managed_scale_in_after_s: float = 900.0
    #: instanceWarmupPeriod when a capacity provider spec gives none (AWS default, ANCHORS)
    managed_default_warmup_s: float = 300.0

    # --- GitHub ----------------------------------------------------------------------------
    #: webhook delivery after the job changes state (assumption: GitHub delivers in ~1 s)
    webhook_delivery_s: float = 1.0
    #: runner process start and (JIT) registration until the runner is online (assumption)
    runner_registration_s: float = 10.0
    #: an online idle runner receives a matching queued job (assumption: broker long poll)
    job_dispatch_s: float = 2.0
    #: a job no runner took for this long is cancelled: "Each job for self-hosted runners that
    #: has been queued for at least 24 hours will be canceled. The actual time in queue can
    #: reach up to 48 hours" (GitHub docs, "Usage limits for self-hosted runners"); the model
    #: takes the 24 h
    queued_job_timeout_s: float = 24 * 3600.0
    #: queue-wait objective (DESIGN: a queue-wait SLO; the issue's 30 s)
    slo_wait_s: float = 30.0

    # --- ecs-reconciler (ours) -----------------------------------------------------------
    #: one controller cycle: observe ECS + GitHub runners, plan, apply (assumption: ~2 s at
    #: this size; the scale benchmark of issue 6 measures the calls per cycle)
    reconcile_cycle_s: float = 2.0
    #: webhook triggers are debounced (ControllerSettings.debounce_ms = 300)
    reconcile_debounce_s: float = 0.3
    #: resync timer (ControllerSettings.resync_interval = 60)
    resync_s: float = 60.0
    #: an empty instance is kept this long before it is drained and terminated (assumption:
    #: one more runner start is likely within two minutes at business hours)
    empty_instance_grace_s: float = 120.0

    # --- actions-runner-controller (arc) -----------------------------------------------------
    #: listener long poll to scaled runners: "20-90 s to react" (ARC #3534, #3704); we take
    #: the best case so the comparison does not rest on ARC's worst
    arc_reaction_s: float = 20.0

    # --- terraform-aws-github-runner (tagr) --------------------------------------------------
    #: webhook -> SQS delay before the scale-up Lambda sees the job (ANCHORS: 30 s)
    tagr_queue_delay_s: float = 30.0
    #: EC2 launch, boot, runner install and registration: "1.5-4 minutes" (tagr #1766); we
    #: take the best case
    tagr_boot_s: float = 90.0
    #: scale-down Lambda period (ANCHORS: every 5 minutes); it also tops up the idle pool
    tagr_sweep_s: float = 300.0
    #: tagr's minimum_running_time_in_minutes default for Linux: an idle runner younger than
    #: this is not terminated by the sweep
    tagr_minimum_running_s: float = 300.0

    # --- cost -------------------------------------------------------------------------------
    #: on-demand USD per instance-hour by instance type name
    instance_prices_usd: dict[str, float] = field(default_factory=lambda: dict(INSTANCE_PRICES_USD))
    #: USD per vCPU-hour of an instance type without a listed price
    vcpu_hour_usd: float = VCPU_HOUR_USD
    #: share of instances launched as spot (0: all on-demand): prices the hours, and with
    #: `spot_interruptions_per_hour` each spot instance may be reclaimed
    spot_share: float = 0.0
    #: interruption notices per spot instance-hour (assumption: the EC2 Spot Instance
    #: Advisor gives each type a monthly bucket, "<5%" to ">20%"; 0.05/h is a harsh hour).
    #: 0: no interruption. Drawn from `spot_seed`, so every policy sees the same dice
    spot_interruptions_per_hour: float = 0.0
    #: the interruption notice: EC2 reclaims a spot instance two minutes after it
    spot_notice_s: float = 120.0
    spot_seed: int = 7
    #: spot discount off on-demand (assumption: ~65%, typical of m6i / m7g in Tokyo per the
    #: EC2 Spot Instance Advisor's "savings over on-demand"; varies by pool and hour)
    spot_discount: float = 0.65

    def __post_init__(self) -> None:
        if not 0 <= self.spot_share <= 1:
            raise ValueError(f"spot share must be within 0..1, got {self.spot_share}")
        if self.spot_interruptions_per_hour < 0 or self.spot_notice_s < 0:
            raise ValueError(
                "spot interruptions per hour and the notice must be >= 0, got "
                f"{self.spot_interruptions_per_hour} and {self.spot_notice_s}"
            )
        if not 0 <= self.spot_discount < 1:
            raise ValueError(f"spot discount must be within 0..1 (excl.), got {self.spot_discount}")
        negative = {name: usd for name, usd in self.instance_prices_usd.items() if usd < 0}
        if negative or self.vcpu_hour_usd < 0:
            raise ValueError(f"prices must be >= 0: {negative or self.vcpu_hour_usd}")

    def usd_per_hour(self, instance_type: InstanceType) -> float:
        """What an hour of the instance type costs, with the spot share and discount."""
        on_demand = self.instance_prices_usd.get(
            instance_type.name, instance_type.vcpus * self.vcpu_hour_usd
        )
        return on_demand * (1 - self.spot_share * self.spot_discount)

    # --- run control -----------------------------------------------------------------------
    #: sampling interval of the time series (plot, queued-jobs peak)
    sample_s: float = 300.0
    #: instance type per capacity provider name
    instance_types: dict[str, InstanceType] = field(default_factory=lambda: dict(INSTANCE_TYPES))

    def instance_type(self, capacity_provider: str) -> InstanceType:
        """The instance type the capacity provider's Auto Scaling group launches."""
        return self.instance_types.get(capacity_provider, DEFAULT_INSTANCE_TYPE)
