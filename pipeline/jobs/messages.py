"""The per-image message the digital layer carries (``embed --message``): a template or a column of a CSV file.

A template is Python format syntax over the sample's fields, ``{key}`` (the WebDataset key) and ``{shard}`` (the
input shard's name): ``--message "asset-{key}"``. A CSV file gives the message of each key in its ``message`` column
(``key,message`` header; keys it does not list get no message). Messages are UTF-8 and at most the model's
``digital.max_message`` bytes (32); a longer one fails that image with a clear error and the job goes on.
"""

from __future__ import annotations

import csv
import io
import string
from dataclasses import dataclass, field

FIELDS = ("key", "shard")


class MessageError(ValueError):
    """A template or CSV file that cannot give messages (a usage error), or one image's message that does not fit."""


@dataclass(frozen=True)
class MessageSource:
    """Where each image's message comes from: ``template`` or ``table`` (key -> message), and the longest allowed."""

    template: str | None = None
    table: dict[str, str] = field(default_factory=dict)
    max_bytes: int = 32
    describe: str = ""

    @classmethod
    def from_template(cls, template: str, max_bytes: int) -> MessageSource:
        names = {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
        unknown = sorted(names - set(FIELDS))
        if unknown:
            raise MessageError(f"--message template names {', '.join(unknown)}: it may use {{key}} and {{shard}}")
        return cls(template=template, max_bytes=max_bytes, describe=f"template {template!r}")

    @classmethod
    def from_csv(cls, data: bytes, name: str, max_bytes: int) -> MessageSource:
        try:
            rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
        except (UnicodeDecodeError, csv.Error) as exc:
            raise MessageError(f"--message-csv {name}: not a UTF-8 CSV file ({exc})") from None
        if not rows or not {"key", "message"} <= set(rows[0]):
            raise MessageError(f"--message-csv {name}: needs a header with the columns key and message")
        table = {r["key"]: r["message"] for r in rows}
        return cls(table=table, max_bytes=max_bytes, describe=f"csv {name} ({len(table)} keys)")

    def message(self, key: str, shard: str) -> bytes | None:
        """The message of one sample (None: none). Raises MessageError when it is longer than ``max_bytes``."""
        text = self.template.format(key=key, shard=shard) if self.template is not None else self.table.get(key)
        if text is None:
            return None
        data = text.encode("utf-8")
        if len(data) > self.max_bytes:
            raise MessageError(
                f"message {text!r} is {len(data)} bytes; the digital layer carries at most {self.max_bytes}"
            )
        return data
