"""Polls on the voting seed's wire: its models (Poll, Option, Go field names) to and from our protos."""

from __future__ import annotations

from agora.polls.v1 import polls_pb2 as pb
from google.protobuf.struct_pb2 import Value
from google.protobuf.timestamp_pb2 import Timestamp

from services.kit.errors import InvalidArgument

# Go's zero time.Time, which the seed's EndDate shows for a poll without an end.
GO_ZERO_TIME = Timestamp(seconds=-62135596800)


def seed_option_texts(values: list[Value]) -> list[str]:
    """The seed's options: each a string, or an object {"Description": ...} with the key in any case."""
    texts: list[str] = []
    for i, value in enumerate(values):
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            texts.append(value.string_value)
            continue
        if kind == "struct_value":
            found = [v for k, v in value.struct_value.fields.items() if k.casefold() == "description"]
            if len(found) == 1 and found[0].WhichOneof("kind") == "string_value":
                texts.append(found[0].string_value)
                continue
        raise InvalidArgument.field(
            f"Options[{i}]", 'expected a string or an object with a "Description" string, e.g. {"Description": "Pizza"}')
    return texts


def seed_poll(poll: pb.Poll, results: pb.PollResults | None) -> pb.SeedPoll:
    """The seed's model.Poll: Votes is the live count; Active is false once the poll is closed."""
    votes = {t.index: t.votes for t in results.tallies} if results is not None else {}
    return pb.SeedPoll(
        id=poll.id, question=poll.question, active=poll.status == pb.POLL_STATUS_OPEN,
        end_date=poll.closes_at if poll.HasField("closes_at") else GO_ZERO_TIME,
        options=[pb.SeedOption(id=o.index, poll_id=poll.id, description=o.text, votes=votes.get(o.index, 0))
                 for o in poll.options],
    )
