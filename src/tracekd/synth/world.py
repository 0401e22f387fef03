"""The people-and-objects world behind bAbI tasks 2, 7 and 8 (and the moves of 1 and 12).

People walk between rooms, pick objects up, drop them and hand them to each other. The world
keeps two views:

- the **true state** (where everyone and everything is), from which answers are read;
- the **stated state** (what the text written so far says), from which supporting lines are read.

As in bAbI, where people and objects start is hidden: nobody holds anything at the start, but a
person's room is known to a reader only after a sentence moves them there, and a dropped object's
room is known only if its dropper's room was. Every change after the start is written, so the
stated room of a person, when there is one, is always the true room.

>>> import random
>>> w = ObjectWorld(random.Random(0))
>>> w.move("Mary", "kitchen", random.Random(1)).startswith("Mary ")
True
>>> w.where["Mary"], w.moved_at["Mary"]
('kitchen', 1)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

PEOPLE = ("Mary", "John", "Sandra", "Daniel")
ROOMS = ("kitchen", "office", "bathroom", "hallway", "garden", "bedroom")
OBJECTS = ("milk", "football", "apple")

MOVE_VERBS = ("went to", "moved to", "travelled to", "journeyed to", "went back to")
TAKE_VERBS = ("took", "picked up", "grabbed", "got")
DROP_VERBS = ("dropped", "left", "discarded", "put down")
GIVE_VERBS = ("handed", "gave", "passed")


@dataclass(frozen=True)
class Event:
    """One written sentence: ``kind`` is move/take/drop/give; ``line`` its 1-based id."""

    line: int
    kind: str
    actor: str
    obj: str | None = None
    room: str | None = None
    recipient: str | None = None


class ObjectWorld:
    """People, rooms and objects; each action returns its sentence and is logged as an Event."""

    #: relative odds of each possible action in :meth:`random_action`
    weights = {"move": 5.0, "take": 5.0, "drop": 3.0, "give": 2.0}

    def __init__(self, rng: random.Random, people=PEOPLE, rooms=ROOMS, objects=OBJECTS):
        self.people, self.rooms, self.objects = tuple(people), tuple(rooms), tuple(objects)
        self.where = {p: rng.choice(self.rooms) for p in self.people}  # true room (hidden at first)
        self.obj_room = {o: rng.choice(self.rooms) for o in self.objects}  # true room when not held
        self.holder: dict[str, str | None] = {o: None for o in self.objects}
        self.acquired_at: dict[str, int] = {}  # object -> line its current holder got it
        self.moved_at: dict[str, int] = {}  # person -> line of their last written move
        self.events: list[Event] = []
        # stated room of each object's last drop: object -> (room, line of the dropper's move) or None
        self._drop_known: dict[str, tuple[str, int] | None] = {}

    # --- actions -----------------------------------------------------------------------------
    @property
    def next_line(self) -> int:
        return len(self.events) + 1

    def held_by(self, person: str) -> list[str]:
        """Objects ``person`` holds, in the order they got them."""
        mine = [o for o in self.objects if self.holder[o] == person]
        return sorted(mine, key=self.acquired_at.__getitem__)

    def move(self, person: str, room: str, rng: random.Random) -> str:
        line = self.next_line
        self.where[person] = room
        self.moved_at[person] = line
        self.events.append(Event(line, "move", person, room=room))
        return f"{person} {rng.choice(MOVE_VERBS)} the {room}."

    def take(self, person: str, obj: str, rng: random.Random) -> str:
        assert self.holder[obj] is None and self.obj_room[obj] == self.where[person]
        line = self.next_line
        self.holder[obj] = person
        self.acquired_at[obj] = line
        self.events.append(Event(line, "take", person, obj=obj))
        return f"{person} {rng.choice(TAKE_VERBS)} the {obj} there."

    def drop(self, person: str, obj: str, rng: random.Random, there_p: float = 0.15) -> str:
        assert self.holder[obj] == person
        line = self.next_line
        self.holder[obj] = None
        self.obj_room[obj] = self.where[person]
        move = self.moved_at.get(person)
        self._drop_known[obj] = (self.where[person], move) if move is not None else None
        self.events.append(Event(line, "drop", person, obj=obj))
        there = " there" if rng.random() < there_p else ""
        return f"{person} {rng.choice(DROP_VERBS)} the {obj}{there}."

    def give(self, person: str, obj: str, recipient: str, rng: random.Random) -> str:
        assert self.holder[obj] == person and self.where[recipient] == self.where[person]
        line = self.next_line
        self.holder[obj] = recipient
        self.acquired_at[obj] = line
        self.events.append(Event(line, "give", person, obj=obj, recipient=recipient))
        return f"{person} {rng.choice(GIVE_VERBS)} the {obj} to {recipient}."

    def random_action(self, rng: random.Random, *, give: bool = False, max_held: int = 2) -> str:
        """One random action of a random person (a move when nothing else is possible)."""
        person = rng.choice(self.people)
        here = self.where[person]
        held = self.held_by(person)
        options = ["move"]
        free_here = [o for o in self.objects if self.holder[o] is None and self.obj_room[o] == here]
        if free_here and len(held) < max_held:
            options.append("take")
        if held:
            options.append("drop")
        others_here = [q for q in self.people if q != person and self.where[q] == here]
        if give and held and others_here:
            options.append("give")
        kind = rng.choices(options, weights=[self.weights[k] for k in options])[0]
        if kind == "take":
            return self.take(person, rng.choice(free_here), rng)
        if kind == "drop":
            return self.drop(person, rng.choice(held), rng)
        if kind == "give":
            return self.give(person, rng.choice(held), rng.choice(others_here), rng)
        return self.move(person, rng.choice([r for r in self.rooms if r != here]), rng)

    # --- what the text says ------------------------------------------------------------------
    def stated_object_room(self, obj: str) -> tuple[str, tuple[int, int]] | None:
        """``(room, supporting lines)`` if the text so far fixes where ``obj`` is, else None.

        Held: the line the holder got it and the holder's last move. Dropped: the drop and the
        dropper's last move before it. Never handled: unknown.
        """
        last = next((e for e in reversed(self.events) if e.obj == obj), None)
        if last is None:
            return None
        if last.kind == "drop":
            known = self._drop_known[obj]
            if known is None:
                return None
            room, move = known
            return room, (move, last.line)
        holder = self.holder[obj]
        assert holder is not None
        move = self.moved_at.get(holder)
        if move is None:
            return None
        return self.where[holder], tuple(sorted((move, self.acquired_at[obj])))  # type: ignore[return-value]

    def holding_events(self, person: str) -> list[int]:
        """Lines of every event that changed what ``person`` holds (take, drop, give, receive)."""
        return [e.line for e in self.events
                if e.kind != "move" and (e.actor == person or e.recipient == person)]
