"""One check that several recipe keys share: a unit that enters a continuously refilled stream late (fvcli/optvis/
stream.py: its own step count, moments and start) gets the picture it gets alone, and the picture a plain batch
gives it -- up to float rounding (drift.same_picture). A key the stream forgot to carry fails it."""
from __future__ import annotations

from fvcli.optvis.stream import StreamItem, render_stream
from fvcli.runner.batch import run_batch, unit_seed
from fvcli.units.unit import parse_units

from drift import same_picture


def late_entry_matches_alone(model, rec, what: str, unit: str = "logit:5", first: str = "logit:0,1"):
    """Render `unit` alone in a stream, third in a 2-slot stream behind `first`, and in a plain batch; compare.
    Returns the lone stream render (for further checks)."""
    target = parse_units(unit, model)[0]
    items = lambda us: [StreamItem(u.objective(model), unit_seed(rec, model, u)) for u in us]  # noqa: E731
    alone = next(iter(render_stream(model, items([target]), rec.loop_settings(), 1)))
    late = next(f for f in render_stream(model, items([*parse_units(first, model), target]),
                                         rec.loop_settings(), 2) if f.index == 2)
    same_picture(alone.snapshots[-1].images[0], late.snapshots[-1].images[0], alone.snapshots[-1].scores[0],
                 late.snapshots[-1].scores[0], what=f"{what}: alone vs entering a stream late")
    batch = run_batch(model, rec, [target])
    same_picture(alone.snapshots[-1].images[0], batch.snapshots[-1].images[0], alone.snapshots[-1].scores[0],
                 batch.snapshots[-1].scores[0], what=f"{what}: stream vs plain batch")
    return alone
