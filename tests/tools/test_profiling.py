"""Profiles grouped by stage: op names parsed right, and time lands where the work is."""

import jax
import jax.numpy as jnp
import pytest

from clarity_jax.tools import profiling


@pytest.mark.parametrize('op_name, expected', [
    ('jit(step)/jvp(encoder)/conv_general_dilated', ('encoder', 'forward')),
    ('jit(step)/transpose(jvp(decoder))/mul', ('decoder', 'backward')),
    # The flow estimator's own warps belong to flow: the outermost stage wins.
    ('jit(step)/jvp(flow)/warp/gather', ('flow', 'forward')),
    ('jit(step)/optimizer/add', ('optimizer', 'forward')),
    ('jit(step)/jvp()/reshape', ('other', 'forward')),
    # A stage name inside another word is not that stage.
    ('jit(step)/jvp(encoder_like)/add', ('other', 'forward')),
])
def test_stage_of(op_name, expected):
  assert profiling.stage_of(op_name) == expected


def _heavy_and_light(x, w):
  with jax.named_scope('encoder'):
    for _ in range(4):
      x = jnp.tanh(x @ w)
  with jax.named_scope('loss'):
    return jnp.mean(x)


def test_profile_puts_the_time_where_the_work_is(tmp_path):
  x = jax.random.normal(jax.random.key(0), (256, 256))
  w = jax.random.normal(jax.random.key(1), (256, 256)) / 16
  step = jax.jit(jax.grad(_heavy_and_light, argnums=1))
  compiled = step.lower(x, w).compile()
  stages = profiling.op_stages(compiled.as_text())
  assert {s for s, _ in stages.values()} >= {'encoder', 'loss'}
  jax.block_until_ready(compiled(x, w))  # warm up outside the trace

  result = profiling.profile(compiled, lambda: compiled(x, w), 3, str(tmp_path / 'trace'))
  table = result['stages']
  # Eight 256^3 matmuls (forward and backward) against one mean.
  assert table['encoder']['share'] > 0.8
  assert table['encoder']['forward_ms'] > 0 and table['encoder']['backward_ms'] > 0
  assert sum(row['share'] for row in table.values()) == pytest.approx(1.0)
  assert sum(row['ms'] for row in table.values()) == pytest.approx(result['op_ms_per_call'])
  assert list((tmp_path / 'trace').rglob('*.trace.json.gz'))


def test_missing_trace_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no \\*.trace.json.gz'):
    profiling.trace_events(str(tmp_path))


def test_accelerator_traces_count_device_time_not_host_launches():
  meta = lambda pid, name: {'ph': 'M', 'pid': pid, 'name': 'process_name',
                            'args': {'name': name}}
  op = lambda pid, dur: {'ph': 'X', 'pid': pid, 'dur': dur, 'name': 'fusion.1',
                         'args': {'hlo_op': 'fusion.1'}}
  gpu_trace = [meta(1, '/host:CPU'), meta(2, '/device:GPU:0'), op(1, 5.0), op(2, 40.0)]
  assert [e['dur'] for e in profiling.device_op_events(gpu_trace)] == [40.0]
  cpu_trace = [meta(1, '/host:CPU'), op(1, 5.0), op(1, 7.0)]
  assert [e['dur'] for e in profiling.device_op_events(cpu_trace)] == [5.0, 7.0]


def test_breakdown_counts_the_ops_each_stage_runs_per_call():
  hlo = '\n'.join([
      'HloModule jit_step',
      'ENTRY %main {',
      '  %a = f32[] add(), metadata={op_name="jit(step)/jvp(encoder)/add"}',
      '  %b = f32[] mul(), metadata={op_name="jit(step)/transpose(jvp(loss))/mul"}',
      '  ROOT %c = f32[] copy()',
      '}'])
  event = lambda op, dur: {'dur': dur, 'args': {'hlo_op': op, 'hlo_module': 'jit_step'}}
  # Two calls: encoder's op twice a call, loss's once, one op without metadata.
  events = [event('a', 10.0), event('a', 30.0), event('b', 5.0), event('c', 1.0)] * 2
  table = profiling.breakdown(events, hlo, calls=2)['stages']
  assert {k: v['ops_per_call'] for k, v in table.items()} == {'encoder': 2, 'loss': 1,
                                                              'other': 1}
  assert table['encoder']['ms'] == pytest.approx(0.04)
  assert table['loss']['backward_ms'] == pytest.approx(0.005)
