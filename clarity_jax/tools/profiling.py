"""Where a compiled step spends its time: a jax.profiler trace, grouped by stage.

The model and the train step open a `jax.named_scope` per stage (flow, warp,
encoder, fusion, decoder, skip, loss, optimizer). XLA keeps the scope in every
instruction's `op_name` metadata, and the profiler tags every executed op with
its instruction name (`hlo_op`), so the op durations of a trace add up per stage,
forward and backward apart (`transpose(jvp(...))` marks the backward pass).
TensorBoard's profile plugin shows the same trace op by op; this gives the one
table that decides what to optimise next, as JSON.

TensorFlow-free, as the benchmark that uses it.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
from typing import Any, Callable, Iterable

import jax

# Outermost first: an op belongs to the first of these that its op_name names
# (the flow estimator's own warps count as flow, not as the frame warp).
STAGES = ('degradation', 'flow', 'warp', 'encoder', 'fusion', 'decoder', 'skip', 'loss',
          'optimizer')
OTHER = 'other'

_COMPUTATION = re.compile(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{\s*$')
_INSTRUCTION = re.compile(r'^\s*(ROOT\s+)?%?([\w.\-]+)\s*=')
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_OPERAND = re.compile(r'%([\w.\-]+)')
_CALLS = re.compile(r'calls=%?([\w.\-]+)')
_MODULE = re.compile(r'^HloModule\s+([\w.\-]+)', re.M)


def stage_of(op_name: str) -> tuple[str, str]:
  """('encoder', 'backward') for 'jit(step)/transpose(jvp(encoder))/conv...'."""
  segments = re.split(r'[/()]', op_name)
  stage = next((s for s in segments if s in STAGES), OTHER)
  direction = 'backward' if 'transpose(' in op_name else 'forward'
  return stage, direction


def op_stages(hlo_text: str) -> dict[str, tuple[str, str]]:
  """Instruction name -> (stage, direction), from the compiled HLO's metadata.

  Some fusions (the CPU's library calls, e.g. a weight-gradient convolution)
  carry no metadata: they take the stage of the computation they call (its
  root's, else its first op's), else that of their first operand with one.
  """
  named: dict[str, str] = {}  # instruction -> op_name
  unnamed: list[tuple[str, str | None, list[str]]] = []  # (name, callee, operands)
  computation_op: dict[str, str] = {}  # computation -> op_name representing it
  current = None
  for line in hlo_text.splitlines():
    if not line.startswith((' ', '\t')):
      match = _COMPUTATION.match(line)
      current = match.group(1) if match else None
      continue
    match = _INSTRUCTION.match(line)
    if not match:
      continue
    is_root, name = match.groups()
    op_name = _OP_NAME.search(line)
    if op_name:
      named[name] = op_name.group(1)
      if current and (is_root or current not in computation_op):
        computation_op[current] = op_name.group(1)
    else:
      callee = _CALLS.search(line)
      args = line[match.end():].split('calls=')[0]
      unnamed.append((name, callee.group(1) if callee else None, _OPERAND.findall(args)))
  stages = {name: stage_of(op_name) for name, op_name in named.items()}
  for name, callee, operands in unnamed:  # in program order: operands come first
    if callee in computation_op:
      stages[name] = stage_of(computation_op[callee])
    elif (known := [stages[o] for o in operands if o in stages]):
      # A weight gradient reads a forward activation and a backward cotangent.
      backward = any(direction == 'backward' for _, direction in known)
      stages[name] = (known[0][0], 'backward' if backward else 'forward')
  return stages


def device_op_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
  """The complete ('X') events to count: those of the accelerators when the trace
  has any (GPU kernels, TPU ops: device time, not the host's launches of them),
  else all (the CPU backend runs the ops on the host)."""
  devices = {e.get('pid') for e in events if e.get('ph') == 'M'
             and e.get('name') == 'process_name'
             and '/device:' in e.get('args', {}).get('name', '')}
  return [e for e in events
          if e.get('ph') == 'X' and (not devices or e.get('pid') in devices)]


def trace_events(trace_dir: str) -> list[dict[str, Any]]:
  """The op events (device_op_events) of the newest perfetto trace under trace_dir."""
  files = sorted(glob.glob(os.path.join(trace_dir, '**', '*.trace.json.gz'), recursive=True),
                 key=os.path.getmtime)
  if not files:
    raise FileNotFoundError(f'{trace_dir}: no *.trace.json.gz (was the trace written with '
                            'create_perfetto_trace=True?)')
  with gzip.open(files[-1], 'rt') as f:
    data = json.load(f)
  return device_op_events(data['traceEvents'] if isinstance(data, dict) else data)


def breakdown(events: Iterable[dict[str, Any]], hlo_text: str, calls: int
              ) -> dict[str, Any]:
  """Op time per stage and direction, in ms per call, from a trace's events.

  Only ops of this HLO module count. On CPU, XLA runs independent ops on several
  threads, so the summed op time can exceed the wall time; the shares are of
  the summed op time.
  """
  module = _MODULE.search(hlo_text)
  name = module.group(1) if module else None
  stages = op_stages(hlo_text)
  per_stage: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
  ops: collections.Counter = collections.Counter()  # executed ops per stage
  for event in events:
    args = event.get('args', {})
    op = args.get('hlo_op')
    if op is None or (name and args.get('hlo_module', name) != name):
      continue
    stage, direction = stages.get(op, (OTHER, 'forward'))
    per_stage[stage][direction] += float(event.get('dur', 0.0)) / 1e3  # us -> ms
    ops[stage] += 1
  total = sum(sum(c.values()) for c in per_stage.values()) or 1.0
  out = {}
  for stage in STAGES + (OTHER,):
    if stage in per_stage:
      counts = per_stage[stage]
      ms = sum(counts.values())
      out[stage] = {'ms': ms / calls, 'share': ms / total,
                    'forward_ms': counts['forward'] / calls,
                    'backward_ms': counts['backward'] / calls,
                    # Not timing-dependent, unlike the shares: which ops run.
                    'ops_per_call': ops[stage] / calls}
  return {'op_ms_per_call': total / calls, 'stages': out}


def profile(compiled: Any, call: Callable[[], Any], calls: int, trace_dir: str
            ) -> dict[str, Any]:
  """Runs call() `calls` times under jax.profiler into trace_dir; the stage table.

  `compiled` is the jax compiled program that call() runs (its HLO names the ops).
  Warm up before: compiling inside the trace would swamp it.
  """
  jax.profiler.start_trace(trace_dir, create_perfetto_trace=True)
  try:
    out = None
    for _ in range(calls):
      out = call()
    jax.block_until_ready(out)
  finally:
    jax.profiler.stop_trace()
  result = breakdown(trace_events(trace_dir), compiled.as_text(), calls)
  result['trace_dir'] = trace_dir
  return result
