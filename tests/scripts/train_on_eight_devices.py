"""One train step on 8 CPU devices trains what it trains on one, whether the mesh
splits the batch ('data 8') or also every crop's rows ('data 2 x space 4'), compiling
once; and eq. (1) on the device gives the same LQ and update on 1 and 8 devices.
Prints each mesh's shardings and differences, a config error for a batch of 4, then
'OK'. Run with XLA_FLAGS=--xla_force_host_platform_device_count=8.

  python tests/scripts/train_on_eight_devices.py REPO TINY_OVERRIDES_JSON
"""

from __future__ import annotations

import json
import sys

import jax
import numpy as np

from clarity_jax import config as config_lib
from clarity_jax import data
from clarity_jax import errors
from clarity_jax import sharding
from clarity_jax.train import feed
from clarity_jax.train import state as state_lib
from clarity_jax.train import step as ts


def main(repo: str, tiny: dict) -> None:
  assert jax.device_count() == 8, jax.devices()

  def tiny_config(**fields):
    config = config_lib.get_config(repo + '/configs/default.py', 'runlocal')
    return config_lib.override(config, {**tiny, **fields})

  config = tiny_config(batch_size=8, ema_decay=0.99, warmup_steps=0)
  config.loss.temporal_weight = 0.1
  rng = np.random.default_rng(0)
  k, c, s = config.num_neighbors, config.data.crop_size, config.scale
  batch = {'lq': rng.random((8, 2 * k + 1, c, c, 3), np.float32),
           'hr': rng.random((8, s * c, s * c, 3), np.float32),
           'lq_next': rng.random((8, 2 * k + 1, c, c, 3), np.float32),
           'hr_next': rng.random((8, s * c, s * c, 3), np.float32)}
  graphdef = state_lib.model_graphdef(config)
  init = jax.device_get(state_lib.init_state(config))  # on the host: steps donate theirs
  results = {}
  for name, devices, space in (('1', jax.devices()[:1], 1), ('data 8', jax.devices(), 1),
                               ('data 2 x space 4', jax.devices(), 4)):
    mesh = sharding.make_mesh(space, devices)
    step = ts.jit_train_step(config, graphdef, mesh)
    state = jax.device_put(init, sharding.replicated(mesh))
    placed = sharding.global_batch(mesh, batch)
    for _ in range(3):
      state, metrics = step(state, placed, None)
    assert step._cache_size() == 1, step._cache_size()  # compiled once for 3 steps
    results[name] = (jax.device_get(state.params), float(metrics['loss']))
    lq = placed['lq']
    print(name, 'mesh', dict(mesh.shape), 'lq', lq.sharding.spec,
          'hr', placed['hr'].sharding.spec, 'lq shard', lq.addressable_shards[0].data.shape)
  ref, ref_loss = results['1']
  moved = max(float(np.abs(a - b).max()) for a, b in
              zip(jax.tree.leaves(init.params), jax.tree.leaves(ref)))
  assert moved > 1e-4, moved
  for name, (params, loss) in results.items():
    worst = max(float(np.abs(a - b).max()) for a, b in
                zip(jax.tree.leaves(ref), jax.tree.leaves(params)))
    print(name, 'loss', loss, 'max param difference to 1 device', worst)
    assert worst < 1e-5 and abs(loss - ref_loss) < 1e-5, (name, worst, loss, ref_loss)

  # Eq. (1) on the device: the same batch of HR windows and parameters trains the same
  # on 1 and 8 devices; half of its windows make the round trip through the host's
  # codec (train/feed.py), so their LQ must agree before x264 rounds it.
  dconfig = tiny_config(batch_size=8, warmup_steps=0, **{
      'degradation.where': 'device', 'degradation.video_codec_prob': 0.5,
      'data.loader': 'threads'})
  dbatch = next(iter(data.create_train_iterator(dconfig, process_index=0, process_count=1)))
  assert 0 < (dbatch['codec_crf'] >= 0).sum() < 8, dbatch['codec_crf']
  dgraph = state_lib.model_graphdef(dconfig)
  dinit = jax.device_get(state_lib.init_state(dconfig))
  dparams, dlq = [], []
  for name, devices, space in (('1', jax.devices()[:1], 1),
                               ('data 2 x space 4', jax.devices(), 4)):
    mesh = sharding.make_mesh(space, devices)
    step = ts.jit_train_step(feed.step_config(dconfig), dgraph, mesh)
    placed = next(feed.batches(dconfig, mesh, iter([dbatch])))
    dlq.append(np.asarray(jax.device_get(placed['lq'])))
    state, metrics = step(jax.device_put(dinit, sharding.replicated(mesh)), placed, None)
    dparams.append(jax.device_get(state.params))
  print('device degradation: LQ difference 1 vs 8 devices',
        float(np.abs(dlq[0] - dlq[1]).max()))
  assert dlq[0].tobytes() == dlq[1].tobytes()
  worst = max(float(np.abs(a - b).max()) for a, b in
              zip(jax.tree.leaves(dparams[0]), jax.tree.leaves(dparams[1])))
  print('device degradation: max param difference 1 vs 8 devices', worst)
  assert worst < 1e-5, worst
  try:
    config_lib.check_fields(tiny_config(batch_size=4))
  except errors.ConfigError as e:
    print('ERR', e)
  print('OK')


if __name__ == '__main__':
  main(sys.argv[1], json.loads(sys.argv[2]))
