#!/usr/bin/python3
"""The PyTorch peer of `bnmlp bench`: the same jobs as the project's core, in PyTorch on the CPU.

Model, optimizer and timing follow the shared peer (../shared/bench/torch_mlp_epoch.py beside
the repository): Input - {Linear - BatchNorm1d(momentum 0.01) - ReLU} x N - Linear - softmax
cross-entropy, SGD with momentum 0.9, lr 0.01 and L2 as weight decay 2 * 1e-4, on CIFAR-10-shaped
data (standard normal inputs, random labels). A step is timed from gathering its batch (X[idx])
to the end of opt.step().

Modes (each prints one JSON line per result, with peak RSS from getrusage as maxrss_kb):
  --mode epoch   one warm-up epoch, then --epochs timed epochs (shuffle, gather, steps):
                 ms_per_step (median epoch / steps, as the shared script) and epoch_s, plus
                 ms_per_step_median (median of the timed steps); with --eval N also inference
                 throughput over N samples (model.eval(), torch.no_grad(), softmax and argmax, in
                 chunks of --eval-batch rows; median of --eval-repeats timings after a warm-up):
                 eval_samples_per_s.
  --mode steps   --warmup steps, then --steps timed steps, each gathering a batch of random
                 indices: ms_per_step (median). --rows '[{"batch":32,"hidden":[50,30],"steps":10,
                 "warmup":3}, ...]' runs several rows in one process (one JSON line each).
  --mode peak    sgemm --size^3 (default 2048): GFLOP/s = 2 size^3 / median of 5 timings.
All modes take --threads (0: torch's default) and --blas-threads (0: OpenBLAS's default). They are
two pools: torch.set_num_threads sets torch's own (elementwise ops, BatchNorm), while the matrix
products run in OpenBLAS's pthread pool, which keeps its default, one thread per core, unless
--blas-threads sets it. So --threads 1 alone (as the shared script runs) still multiplies on
every core; --threads 1 --blas-threads 1 is one core. Every line reports blas_threads, what
OpenBLAS ran with (null when torch does not use OpenBLAS). Setup (Debian): apt-get install -y
python3-torch libopenblas0-pthread. No numpy needed.
"""
import argparse, ctypes, json, resource, statistics, sys, time
import torch

p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
p.add_argument('--mode', choices=['epoch', 'steps', 'peak'], default='epoch')
p.add_argument('--threads', type=int, default=0, help='0: torch default')
p.add_argument('--blas-threads', type=int, default=0, help="OpenBLAS's threads for the matrix products (0: its default)")
p.add_argument('--hidden', default='50,30')
p.add_argument('--batch', type=int, default=100)
p.add_argument('--samples', type=int, default=50000)
p.add_argument('--inputs', type=int, default=3072)
p.add_argument('--classes', type=int, default=10)
p.add_argument('--no-bn', action='store_true')
p.add_argument('--seed', type=int, default=0)
p.add_argument('--epochs', type=int, default=3, help='epoch mode: timed epochs, after one warm-up epoch')
p.add_argument('--eval', type=int, default=0, help='epoch mode: inference throughput over this many samples (0: none)')
p.add_argument('--eval-batch', type=int, default=1000, help='epoch mode: rows per inference chunk (0: all at once)')
p.add_argument('--eval-repeats', type=int, default=5)
p.add_argument('--steps', type=int, default=20, help='steps mode: timed steps')
p.add_argument('--warmup', type=int, default=3, help='steps mode: untimed steps first')
p.add_argument('--rows', default='', help='steps mode: a JSON list of {batch, hidden, steps, warmup}')
p.add_argument('--size', type=int, default=2048, help='peak mode: the matrices are size x size')
a = p.parse_args()
if a.threads: torch.set_num_threads(a.threads)
torch.manual_seed(a.seed)


def openblas():
    # Debian's torch multiplies through the system BLAS; with libopenblas0-pthread that is OpenBLAS.
    for name in ('libopenblas.so.0', 'libblas.so.3'):
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_num_threads  # raises AttributeError when this BLAS is not OpenBLAS
            return lib
        except (OSError, AttributeError):
            pass
    return None


BLAS = openblas()
if a.blas_threads:
    if BLAS is None: sys.exit('--blas-threads: torch does not use OpenBLAS here')
    BLAS.openblas_set_num_threads(a.blas_threads)


def emit(result):
    result.update({'peer': 'pytorch', 'mode': a.mode, 'version': torch.__version__, 'threads': torch.get_num_threads(),
                   'blas_threads': BLAS.openblas_get_num_threads() if BLAS else None,
                   'maxrss_kb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
    print(json.dumps(result), flush=True)


def build(hidden):
    layers, dims = [], [a.inputs] + hidden
    for i in range(len(hidden)):
        layers.append(torch.nn.Linear(dims[i], dims[i + 1]))
        if not a.no_bn: layers.append(torch.nn.BatchNorm1d(dims[i + 1], momentum=0.01))
        layers.append(torch.nn.ReLU())
    layers.append(torch.nn.Linear(dims[-1], a.classes))
    model = torch.nn.Sequential(*layers)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=2 * 1e-4)
    return model, opt


def parse_hidden(text):
    return [int(h) for h in str(text).split(',') if h]


loss_fn = torch.nn.CrossEntropyLoss()


def step(model, opt, X, Y, idx):
    opt.zero_grad(set_to_none=True)
    loss_fn(model(X[idx]), Y[idx]).backward()
    opt.step()


def epoch_mode():
    hidden = parse_hidden(a.hidden)
    X = torch.randn(a.samples, a.inputs)
    Y = torch.randint(0, a.classes, (a.samples,))
    model, opt = build(hidden)
    steps = a.samples // a.batch
    step_ms = []

    def epoch(record):
        perm = torch.randperm(a.samples)
        for i in range(steps):
            t = time.perf_counter()
            step(model, opt, X, Y, perm[i * a.batch:(i + 1) * a.batch])
            if record: step_ms.append(1000 * (time.perf_counter() - t))

    epoch(False)
    times = []
    for _ in range(a.epochs):
        t = time.perf_counter(); epoch(True); times.append(time.perf_counter() - t)
    sec = statistics.median(times)
    result = {'hidden': hidden, 'bn': not a.no_bn, 'batch': a.batch, 'samples': a.samples,
              'ms_per_step': round(1000 * sec / steps, 3), 'epoch_s': round(sec, 3),
              'ms_per_step_median': round(statistics.median(step_ms), 4), 'epochs': a.epochs}
    if a.eval > 0:
        n = min(a.eval, a.samples)
        chunk = a.eval_batch if a.eval_batch > 0 else n
        model.eval()

        def infer():
            correct = 0
            with torch.no_grad():
                for s in range(0, n, chunk):
                    probs = torch.softmax(model(X[s:s + chunk]), dim=1)
                    correct += int((probs.argmax(dim=1) == Y[s:s + chunk]).sum())
            return correct

        infer()
        eval_times = []
        for _ in range(max(5, a.eval_repeats)):
            t = time.perf_counter(); infer(); eval_times.append(time.perf_counter() - t)
        result.update({'eval_samples': n, 'eval_batch': min(chunk, n), 'eval_samples_per_s': round(n / statistics.median(eval_times), 1)})
    emit(result)


def steps_mode():
    rows = json.loads(a.rows) if a.rows else [{'batch': a.batch, 'hidden': a.hidden, 'steps': a.steps, 'warmup': a.warmup}]
    X = torch.randn(a.samples, a.inputs)
    Y = torch.randint(0, a.classes, (a.samples,))
    for row in rows:
        hidden = row['hidden'] if isinstance(row['hidden'], list) else parse_hidden(row['hidden'])
        batch, steps, warmup = int(row['batch']), int(row.get('steps', a.steps)), int(row.get('warmup', a.warmup))
        model, opt = build(hidden)

        def one():
            t = time.perf_counter()
            step(model, opt, X, Y, torch.randint(0, a.samples, (batch,)))
            return 1000 * (time.perf_counter() - t)

        for _ in range(warmup): one()
        times = [one() for _ in range(max(1, steps))]
        emit({'hidden': hidden, 'bn': not a.no_bn, 'batch': batch, 'samples': a.samples, 'inputs': a.inputs, 'classes': a.classes,
              'steps': len(times), 'warmup': warmup, 'ms_per_step': round(statistics.median(times), 4)})
        del model, opt


def peak_mode():
    n = a.size
    x, y, out = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(x, y, out=out)
    times = []
    for _ in range(5):
        t = time.perf_counter(); torch.mm(x, y, out=out); times.append(time.perf_counter() - t)
    emit({'size': n, 'seconds': round(statistics.median(times), 5), 'gflops': round(2 * n ** 3 / statistics.median(times) / 1e9, 2)})


{'epoch': epoch_mode, 'steps': steps_mode, 'peak': peak_mode}[a.mode]()
sys.stdout.flush()
