"""The what-if cost model: a step's time at N ranks from measured compute per sample and the bytes each
parallel mode communicates per step (alpha-beta network model); pure arithmetic, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

DEFAULT_BANDWIDTH_GBIT = 10.0  # a 10 GbE link
DEFAULT_LATENCY_US = 20.0


@dataclass(frozen=True)
class Network:
    """Alpha-beta model of a link: each message costs `latency_us`, each byte 8 / `bandwidth_gbit` ns."""

    bandwidth_gbit: float = DEFAULT_BANDWIDTH_GBIT
    latency_us: float = DEFAULT_LATENCY_US

    def seconds(self, sent_bytes: float, messages: int) -> float:
        """Time to send `sent_bytes` in `messages` messages, one after the other."""
        return sent_bytes * 8 / (self.bandwidth_gbit * 1e9) + messages * self.latency_us * 1e-6


def ring_all_reduce_bytes(ranks: int, nbytes: float) -> float:
    """Bytes each rank sends in a ring all-reduce of `nbytes`: 2(N-1)/N x bytes, in 2(N-1) messages."""
    return 2 * (ranks - 1) / ranks * nbytes


def ring_gather_bytes(ranks: int, nbytes: float) -> float:
    """Bytes each rank sends in a ring all-gather (or reduce-scatter) of a tensor of `nbytes` in all:
    (N-1)/N x bytes, in N-1 messages."""
    return (ranks - 1) / ranks * nbytes


def ddp_comm_seconds(ranks: int, gradient_bytes: float, network: Network) -> float:
    """DDP: one ring all-reduce of every gradient per step."""
    if ranks <= 1:
        return 0.0
    return network.seconds(ring_all_reduce_bytes(ranks, gradient_bytes), 2 * (ranks - 1))


def fsdp_comm_seconds(ranks: int, parameter_bytes: float, blocks: int, network: Network) -> float:
    """FSDP (parameters resharded after forward): per block an all-gather of its parameters in forward,
    another in backward, and a reduce-scatter of its gradients: 3 x (N-1)/N x bytes per step,
    3 x blocks x (N-1) messages."""
    if ranks <= 1:
        return 0.0
    sent = 3 * ring_gather_bytes(ranks, parameter_bytes)
    return network.seconds(sent, 3 * max(blocks, 1) * (ranks - 1))


def pipeline_bubble(stages: int, microbatches: int) -> float:
    """The idle fraction of a GPipe/1F1B schedule: (S-1) / (M+S-1)."""
    return (stages - 1) / (microbatches + stages - 1)


def pipeline_step_seconds(
    stages: int,
    microbatches: int,
    batch_compute_seconds: float,
    boundary_bytes_per_sample: float,
    batch: int,
    network: Network,
) -> tuple[float, float]:
    """(step seconds, of which communication) of a pipeline: the batch's compute split evenly over S
    stages, M micro-batches, each crossing a stage boundary as activations forward and their gradients
    backward; the schedule takes M+S-1 slots of one stage's micro-batch time."""
    per_slot_compute = batch_compute_seconds / stages / microbatches
    if stages <= 1:
        return batch_compute_seconds, 0.0
    micro_bytes = boundary_bytes_per_sample * batch / microbatches
    per_slot_comm = network.seconds(2 * micro_bytes, 2)
    slots = microbatches + stages - 1
    return slots * (per_slot_compute + per_slot_comm), slots * per_slot_comm


@dataclass(frozen=True)
class Workload:
    """What one measurement says about a job, independent of how many ranks run it."""

    mode: str  # parallel mode: none, ddp, fsdp, pipeline, tensor, local_sgd
    global_batch: int
    compute_per_sample: float  # seconds of one rank's forward + backward + update per sample
    parameter_bytes: float  # trainable parameters (= gradients) in bytes
    blocks: int = 1  # FSDP: the units sharded (one collective each)
    microbatches: int = 1  # pipeline
    boundary_bytes_per_sample: float = 0.0  # pipeline: activations crossing the widest stage boundary


@dataclass
class Prediction:
    """A predicted step at `ranks` ranks, with its parts and the assumptions behind it."""

    ranks: int
    step_seconds: float
    compute_seconds: float
    comm_seconds: float
    bubble: float = 0.0
    formula: str = ""
    assumptions: list[str] = field(default_factory=list)


ASSUMPTIONS = [
    "each rank computes as fast per sample as the measured rank (its own cores or device)",
    "communication does not overlap computation (an upper bound for DDP, which overlaps buckets)",
    "ring collectives on one link per rank (alpha-beta model: latency per message + bytes / bandwidth)",
]


def predict_step(work: Workload, ranks: int, network: Network) -> Prediction:
    """The step time of `work` at `ranks` ranks under its parallel mode."""
    batch_compute = work.compute_per_sample * work.global_batch
    bw, lat = network.bandwidth_gbit, network.latency_us
    if work.mode == "pipeline":
        step, comm = pipeline_step_seconds(
            ranks,
            work.microbatches,
            batch_compute,
            work.boundary_bytes_per_sample,
            work.global_batch,
            network,
        )
        return Prediction(
            ranks,
            step,
            step - comm,
            comm,
            bubble=pipeline_bubble(ranks, work.microbatches),
            formula=(
                f"(M+S-1) x (compute/S/M + 2 x activation bytes per micro-batch / {bw:g} Gbit/s + "
                f"2 x {lat:g} us), S={ranks} stages, M={work.microbatches}; bubble (S-1)/(M+S-1)"
            ),
            assumptions=[*ASSUMPTIONS, "stages hold equal compute"],
        )
    compute = batch_compute / ranks  # data parallel: each rank its share of the global batch
    if work.mode == "fsdp":
        comm = fsdp_comm_seconds(ranks, work.parameter_bytes, work.blocks, network)
        formula = (
            f"compute/N + 3 x (N-1)/N x {work.parameter_bytes / 1e6:.2f} MB / {bw:g} Gbit/s + "
            f"3 x {work.blocks} blocks x (N-1) x {lat:g} us (all-gather x2 + reduce-scatter)"
        )
    elif work.mode in ("ddp", "local_sgd", "none"):
        comm = ddp_comm_seconds(ranks, work.parameter_bytes, network)
        formula = (
            f"compute/N + 2 x (N-1)/N x {work.parameter_bytes / 1e6:.2f} MB / {bw:g} Gbit/s + "
            f"2 x (N-1) x {lat:g} us (ring all-reduce of the gradients)"
        )
        if work.mode == "local_sgd":
            formula += "; local_sgd averages every K steps: an upper bound"
    else:
        comm = ddp_comm_seconds(ranks, work.parameter_bytes, network)
        formula = f"parallel={work.mode}: modelled as DDP (not its own formula)"
    return Prediction(ranks, compute + comm, compute, comm, formula=formula, assumptions=list(ASSUMPTIONS))


def compute_per_sample(
    step_seconds: float, work_without_compute: Workload, ranks: int, network: Network
) -> float:
    """The compute per sample behind a step measured at `ranks` ranks: the modelled communication (and
    pipeline slots) taken out again."""
    batch = work_without_compute.global_batch
    if ranks <= 1:
        return step_seconds / batch
    if work_without_compute.mode == "pipeline":
        unit = predict_step(replace(work_without_compute, compute_per_sample=1.0 / batch), ranks, network)
        comm = unit.comm_seconds
        slots_per_compute = unit.step_seconds - comm  # seconds of schedule per second of batch compute
        return max(step_seconds - comm, 0.0) / slots_per_compute / batch
    comm = predict_step(replace(work_without_compute, compute_per_sample=0.0), ranks, network).comm_seconds
    return max(step_seconds - comm, 0.0) * ranks / batch
