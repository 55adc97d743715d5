"""rosbag2 bags with MCAP storage, written and read with the pure-Python `rosbags` library.

A bag is what `ros2 bag record -s mcap` makes: a directory with `metadata.yaml` and MCAP files
that hold raw CDR bytes (`ros2 bag info`, `ros2 bag play`, Foxglove and the `mcap` tools open it).
Messages go in as the serialized bytes the middleware delivered and are never deserialised on the
way in.

Crash safety, without ever listing a half-written file:

* the bag rolls to a new MCAP file at every `roll()` (the recorder rolls at each episode end)
  and when a file passes `split_bytes`. Only closed files -- complete, with footer and summary,
  flushed to disk -- are listed in `metadata.yaml`, which is rewritten atomically after each
  roll. So after a SIGKILL the bag opens as it stood at the last roll;
* the open file is `<name>.mcap`; its MCAP chunks are handed to the OS at every `flush()` and at
  least every `flush_s` seconds, so `repair_bag()` can salvage all but the last moments of it
  into a listed file.

Reading (`open_bag`) turns every problem -- missing or unparsable metadata, missing, truncated or
corrupt MCAP files, undecodable messages -- into one-line `DataError`s naming the bag.
"""
from __future__ import annotations

import errno
import json
import os
import struct
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from robot_rl.data.dataset import fsync_path
from robot_rl.errors import DataError

STORAGE = "mcap"
BAG_VERSION = 9  # rosbag2 metadata version written by Jazzy/Kilted
EVENTS_TOPIC = "/recorder/events"  # std_msgs/String JSON: episode start/stop/discard markers
STRING_TYPE = "std_msgs/msg/String"
ACTIVE_SUFFIX = ".mcap"  # the open file is <name>.mcap; closed files are <name>_<i>.mcap
DEFAULT_SPLIT_BYTES = 1 << 30

# Errors that mean "the disk refuses to take more": recording must stop.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO}


def _fail(path, problem: str) -> DataError:
    return DataError(f"bag {path}: {problem}".replace("\n", " "))


def os_error_text(e: OSError) -> str:
    """'No space left on device' etc.: the OS's words, plus what to do for the usual cases."""
    text = e.strerror or str(e)
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{text} (disk full; free space or record to another disk)"
    if e.errno == errno.EFBIG:
        return f"{text} (file size limit reached; lower split size or raise the limit)"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{text} (no write permission; choose a writable directory)"
    return text


# ---------------------------------------------------------------------------- types


@lru_cache(maxsize=1)
def typestore():
    """The rosbags type store of the ROS 2 distro we target (standard message definitions)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_KILTED)


def msgtype_name(msgtype: str) -> str:
    """'sensor_msgs/JointState' or 'sensor_msgs/msg/JointState' -> 'sensor_msgs/msg/JointState'."""
    parts = msgtype.strip().split("/")
    if len(parts) == 2:
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3 or not all(parts):
        raise DataError(f"message type {msgtype!r} is not of the form pkg/msg/Type")
    return "/".join(parts)


@lru_cache(maxsize=None)
def has_header(msgtype: str, store=None) -> bool:
    """True when the message's first field is a std_msgs/Header (its stamp is bytes 4:12 of CDR)."""
    store = store or typestore()
    fields = store.fielddefs.get(msgtype)
    if not fields or not fields[1]:
        return False
    first_name, first_type = fields[1][0]
    return first_name == "header" and first_type[1] == "std_msgs/msg/Header"


def header_stamp_ns(raw) -> int:
    """The header stamp (ns) of a serialized stamped message, read from its first 12 bytes.

    CDR: 4 encapsulation bytes (0x00 0x01 little endian, 0x00 0x00 big endian), then the
    header's int32 sec and uint32 nanosec. Returns 0 when the buffer is too short.
    """
    if len(raw) < 12:
        return 0
    sec, nsec = struct.unpack_from("<iI" if raw[1] & 1 else ">iI", raw, 4)
    return sec * 1_000_000_000 + nsec


# ---------------------------------------------------------------------------- writing


@dataclass
class _Topic:
    id: int
    topic: str
    msgtype: str
    qos: list  # rosbags Qos
    count: int = 0  # messages in closed files
    file_count: int = 0  # messages in the open file


@dataclass
class _ClosedFile:
    path: str
    start: int
    duration: int
    count: int


class BagWriter:
    """Write a rosbag2 MCAP bag: `add_topic`, `write` raw CDR, `roll`/`flush`, `close`.

    Not thread-safe: one thread writes (the recorder's writer thread). Every OSError is raised as
    DataError('bag <path>: cannot write ...: <OS words>'); after one the writer is unusable.
    """

    def __init__(self, path: str | os.PathLike, *, split_bytes: int = DEFAULT_SPLIT_BYTES,
                 compression: str = "none", flush_s: float = 1.0, custom_data: dict | None = None,
                 fsync: bool = True):
        from rosbags.rosbag2.enums import CompressionMode

        self.path = Path(path)
        if compression not in ("none", "zstd"):
            raise DataError(f"bag compression must be 'none' or 'zstd', got {compression!r}")
        self._compression = CompressionMode.STORAGE if compression == "zstd" else CompressionMode.NONE
        self.split_bytes = int(split_bytes)
        self.flush_s = float(flush_s)
        self.fsync = fsync
        self.custom_data = {str(k): str(v) for k, v in (custom_data or {}).items()}
        self.topics: dict[str, _Topic] = {}
        self.closed: list[_ClosedFile] = []
        self.bytes_written = 0  # message payload bytes handed to storage
        self._storage = None
        self._file_start = 2**63 - 1
        self._file_end = 0
        self._file_bytes = 0
        self._last_flush = time.monotonic()
        self._broken: DataError | None = None
        if self.path.exists():
            raise _fail(self.path, "already exists; choose a new bag path (bags are never overwritten)")
        try:
            self.path.mkdir(parents=True)
            self._write_metadata()
        except OSError as e:
            raise _fail(self.path, f"cannot create bag: {os_error_text(e)}") from e

    # -------------------------------------------------------------- topics and messages

    def add_topic(self, topic: str, msgtype: str, qos=None) -> int:
        """Register a topic (idempotent for the same type); returns its id for `write`."""
        msgtype = msgtype_name(msgtype)
        if topic in self.topics:
            if self.topics[topic].msgtype != msgtype:
                raise _fail(self.path, f"topic {topic} already recorded as {self.topics[topic].msgtype}, not {msgtype}")
            return self.topics[topic].id
        if msgtype not in typestore().fielddefs:
            raise _fail(self.path, f"unknown message type {msgtype} for topic {topic}")
        t = _Topic(len(self.topics) + 1, topic, msgtype, list(qos or []))
        self.topics[topic] = t
        if self._storage is not None:
            self._guard(lambda: self._add_to_storage(t), "cannot register topic")
        return t.id

    def write(self, topic: str, log_time_ns: int, data, publish_time_ns: int | None = None) -> None:
        """Append one serialized message (bytes/memoryview) with its receive (log) time and the
        time its publisher sent it (MCAP publish_time, as rosbag2 records it), both in ns."""
        self._check()
        t = self.topics[topic]
        if self._storage is None:
            self._guard(self._open_file, "cannot open a new file")
        conn = self._connections[t.id]
        self._guard(lambda: self._storage.write(conn, log_time_ns, data, publish_time_ns), "cannot write")
        t.file_count += 1
        n = len(data)
        self.bytes_written += n
        self._file_bytes += n
        self._file_start = min(self._file_start, log_time_ns)
        self._file_end = max(self._file_end, log_time_ns)
        if self._file_bytes >= self.split_bytes:
            self.roll()
        elif time.monotonic() - self._last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        """Close the open MCAP chunk and hand it to the OS (survives SIGKILL; see repair_bag)."""
        self._check()
        self._last_flush = time.monotonic()
        if self._storage is None:
            return

        def do():
            if self._storage.chunk.bio.tell():
                self._storage.close_chunk()
            self._storage.bio.flush()

        self._guard(do, "cannot flush")

    def roll(self) -> None:
        """Close the open file (complete MCAP), list it in metadata.yaml; the next write opens a new one."""
        self._check()
        self._last_flush = time.monotonic()
        if self._storage is None:
            return
        index = len(self.closed)
        while (self.path / f"{self.path.name}_{index}.mcap").exists():
            index += 1
        final = self.path / f"{self.path.name}_{index}.mcap"
        count = sum(t.file_count for t in self.topics.values())

        def do():
            storage, self._storage = self._storage, None
            storage.close(BAG_VERSION, self._metadata_text(extra_file=(final.name, count)))
            if self.fsync:
                fsync_path(storage.path)
            os.rename(storage.path, final)
            self.closed.append(_ClosedFile(final.name, self._file_start if count else 0,
                                           max(0, self._file_end - self._file_start) if count else 0, count))
            for t in self.topics.values():
                t.count += t.file_count
                t.file_count = 0
            self._write_metadata()

        self._guard(do, "cannot close file")

    def close(self) -> None:
        """Roll the open file and finish; the bag is then complete."""
        if self._broken is None:
            self.roll()

    def abort(self) -> None:
        """Stop after an error: close the open file handle as it is (left unlisted for repair_bag)."""
        storage, self._storage = self._storage, None
        if storage is not None:
            with suppress(Exception):
                storage.abort()

    @property
    def message_count(self) -> int:
        return sum(t.count + t.file_count for t in self.topics.values())

    # -------------------------------------------------------------- internals

    def _check(self):
        if self._broken is not None:
            raise self._broken

    def _guard(self, fn, what: str):
        try:
            return fn()
        except OSError as e:
            self._broken = _fail(self.path, f"{what}: {os_error_text(e)}")
            self.abort()
            raise self._broken from e

    def _open_file(self) -> None:
        McapWriter = _lean_mcap_writer()
        active = self.path / f"{self.path.name}{ACTIVE_SUFFIX}"
        if active.exists():  # a crashed earlier writer's file: keep it for repair_bag
            os.rename(active, self.path / f"{self.path.name}.orphan-{time.time_ns()}.mcap")
        self._storage = McapWriter(self.path, self._compression)
        self._connections = {}
        self._types_added = set()
        self._file_start, self._file_end, self._file_bytes = 2**63 - 1, 0, 0
        for t in self.topics.values():
            self._add_to_storage(t)

    def _add_to_storage(self, t: _Topic) -> None:
        from rosbags.interfaces import Connection, ConnectionExtRosbag2, MessageDefinition, MessageDefinitionFormat
        from rosbags.rosbag2.metadata import dump_qos_v9

        store = typestore()
        msgdef, _ = store.generate_msgdef(t.msgtype, ros_version=2)
        conn = Connection(id=t.id, topic=t.topic, msgtype=t.msgtype,
                          msgdef=MessageDefinition(MessageDefinitionFormat.MSG, msgdef),
                          digest=store.hash_rihs01(t.msgtype), msgcount=0,
                          ext=ConnectionExtRosbag2(serialization_format="cdr", offered_qos_profiles=t.qos),
                          owner=self)
        if t.msgtype not in self._types_added:
            self._storage.add_msgtype(conn)
            self._types_added.add(t.msgtype)
        self._storage.add_connection(conn, _qos_yaml(dump_qos_v9(t.qos)))
        self._connections[t.id] = conn

    def _metadata_dict(self, extra_file: tuple[str, int] | None = None) -> dict:
        from rosbags.rosbag2.metadata import dump_qos_v9

        files = [dict(path=f.path, starting_time={"nanoseconds_since_epoch": f.start},
                      duration={"nanoseconds": f.duration}, message_count=f.count) for f in self.closed]
        counts = {t.id: t.count for t in self.topics.values()}
        if extra_file is not None:
            start = self._file_start if extra_file[1] else 0
            files.append(dict(path=extra_file[0], starting_time={"nanoseconds_since_epoch": start},
                              duration={"nanoseconds": max(0, self._file_end - start) if extra_file[1] else 0},
                              message_count=extra_file[1]))
            counts = {t.id: t.count + t.file_count for t in self.topics.values()}
        with_msgs = [f for f in files if f["message_count"]]
        start = min((f["starting_time"]["nanoseconds_since_epoch"] for f in with_msgs), default=0)
        end = max((f["starting_time"]["nanoseconds_since_epoch"] + f["duration"]["nanoseconds"]
                   for f in with_msgs), default=0)
        return {"rosbag2_bagfile_information": {
            "version": BAG_VERSION,
            "storage_identifier": STORAGE,
            "relative_file_paths": [f["path"] for f in files],
            "duration": {"nanoseconds": max(0, end - start)},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": sum(counts.values()),
            "topics_with_message_count": [
                {"topic_metadata": {"name": t.topic, "type": t.msgtype, "serialization_format": "cdr",
                                    "offered_qos_profiles": dump_qos_v9(t.qos),
                                    "type_description_hash": typestore().hash_rihs01(t.msgtype)},
                 "message_count": counts[t.id]}
                for t in self.topics.values()],
            "compression_format": "",
            "compression_mode": "",
            "files": files,
            "custom_data": self.custom_data or None,
            "ros_distro": "kilted",
        }}

    def _metadata_text(self, extra_file=None) -> str:
        import yaml

        return yaml.safe_dump(self._metadata_dict(extra_file)["rosbag2_bagfile_information"],
                              default_flow_style=False, sort_keys=False)

    def _write_metadata(self) -> None:
        import yaml

        text = yaml.safe_dump(self._metadata_dict(), default_flow_style=False, sort_keys=False)
        _write_text_atomic(self.path / "metadata.yaml", text, self.fsync)


_MESSAGE_HEADER = struct.Struct("<BQHIQQ")  # opcode, record length, channel id, sequence, log/publish time
_CHUNK_HEADER = struct.Struct("<BQQQQIIQ")  # opcode, length, start, end, uncompressed size, crc, '' , size
_DIRECT_BYTES = 64 * 1024  # messages this big go straight to the file as a one-message chunk
_CHUNK_BYTES = 1 << 20


def _lean_mcap_writer():
    """rosbags' McapWriter with fewer copies per message (the output bytes are the same format).

    rosbags builds each record in a fresh BytesIO and copies it into the chunk, then copies the
    chunk twice more on the way to the file: five copies of every image. Here a message is
    written once into the chunk buffer, the chunk goes to the file from that buffer, and a
    message of 64 KiB or more goes straight from the middleware's buffer to the file as a chunk
    of its own. Compressed chunks take rosbags' own path. Checked against rosbags 0.11.9.
    """
    from rosbags.rosbag2.storage_mcap import McapWriter, PendingChunk, write_record, write_uint16, write_uint32, \
        write_uint64
    from collections import defaultdict
    from io import BytesIO

    class LeanMcapWriter(McapWriter):
        def write(self, connection, timestamp: int, data, publish_time: int | None = None) -> None:
            publish = timestamp if publish_time is None else publish_time
            cid, n = connection.id, len(data)
            if timestamp < self.message_start_time:
                self.message_start_time = timestamp
            if timestamp > self.message_end_time:
                self.message_end_time = timestamp
            self.channel_stats[cid] += 1
            if n >= _DIRECT_BYTES and not self.compression:
                if self.chunk.bio.tell():
                    self.close_chunk()
                header = _MESSAGE_HEADER.pack(0x05, 22 + n, cid, 0, timestamp, publish)
                self._write_chunk(timestamp, timestamp, {cid: [(timestamp, 0)]}, (header, data), len(header) + n)
                return
            chunk = self.chunk
            if timestamp < chunk.message_start_time:
                chunk.message_start_time = timestamp
            if timestamp > chunk.message_end_time:
                chunk.message_end_time = timestamp
            chunk.msgs[cid].append((timestamp, chunk.bio.tell()))
            chunk.bio.write(_MESSAGE_HEADER.pack(0x05, 22 + n, cid, 0, timestamp, publish))
            chunk.bio.write(data)
            if chunk.bio.tell() > _CHUNK_BYTES:
                self.close_chunk()

        def close_chunk(self) -> None:
            if self.compression:
                return super().close_chunk()
            chunk = self.chunk
            size = chunk.bio.tell()
            with chunk.bio.getbuffer() as records:
                self._write_chunk(chunk.message_start_time, chunk.message_end_time, chunk.msgs, (records,), size)
            self.chunk = PendingChunk(2**63 - 1, 0, BytesIO(), defaultdict(list))

        def _write_chunk(self, start: int, end: int, msgs: dict, parts, size: int) -> None:
            """One uncompressed Chunk record from `parts` (bytes-likes, `size` in all), its
            MessageIndex records, and the ChunkIndex entry for the summary."""
            bio = self.bio
            chunk_start = bio.tell()
            bio.write(_CHUNK_HEADER.pack(0x06, 8 + 8 + 8 + 4 + 4 + 8 + size, start, end, size, 0, 0, size))
            for part in parts:
                bio.write(part)
            chunk_end = bio.tell()
            offsets = []
            for cid, entries in msgs.items():
                offsets.append((cid, bio.tell()))
                rec = BytesIO()
                write_uint16(rec, cid)
                write_uint32(rec, len(entries) * 16)
                for ts, offset in entries:
                    write_uint64(rec, ts)
                    write_uint64(rec, offset)
                write_record(bio, 0x07, rec)
            rec = BytesIO()
            write_uint64(rec, start)
            write_uint64(rec, end)
            write_uint64(rec, chunk_start)
            write_uint64(rec, chunk_end - chunk_start)
            write_uint32(rec, len(offsets) * 10)
            for cid, offset in offsets:
                write_uint16(rec, cid)
                write_uint64(rec, offset)
            write_uint64(rec, bio.tell() - chunk_end)
            write_uint32(rec, 0)  # compression '' (a length-0 string)
            write_uint64(rec, size)
            write_uint64(rec, size)
            self.chunks.append(rec)

    return LeanMcapWriter


def _qos_yaml(dumped) -> str:
    if isinstance(dumped, str):
        return dumped
    import yaml

    return yaml.safe_dump(dumped, default_flow_style=False).strip() if dumped else ""


def _write_text_atomic(path: Path, text: str, fsync: bool = True) -> None:
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(temp, "w") as f:
            f.write(text)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(temp, path)
    finally:
        with suppress(FileNotFoundError):
            temp.unlink()
    if fsync:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bag(path, messages: Iterable[tuple[str, str, int, bytes]], **kwargs) -> Path:
    """Write (topic, msgtype, log_time_ns, raw) tuples as a complete bag; returns its path."""
    writer = BagWriter(path, **kwargs)
    for topic, msgtype, t, raw in messages:
        writer.add_topic(topic, msgtype)
        writer.write(topic, t, raw)
    writer.close()
    return writer.path


def serialize(msg, msgtype: str) -> bytes:
    """A rosbags message object -> CDR bytes (little endian), for tests and bag conversion."""
    return bytes(typestore().serialize_cdr(msg, msgtype_name(msgtype)))


# ---------------------------------------------------------------------------- reading


@dataclass
class BagInfo:
    path: Path
    topics: dict[str, str]  # topic -> msgtype
    counts: dict[str, int]  # topic -> messages
    start_ns: int
    end_ns: int
    files: list[str]
    orphans: list[str] = field(default_factory=list)  # unlisted .mcap files (crashed writer)

    @property
    def message_count(self) -> int:
        return sum(self.counts.values())


def _complete_messages(bag: Path, file: Path):
    """(channel, schema, message) of every complete message of an MCAP file, in file order, up to
    where it is truncated (no summary needed: a killed writer's file, a cut copy)."""
    from mcap.exceptions import McapError
    from mcap.records import Channel, Message, Schema
    from mcap.stream_reader import StreamReader

    schemas, channels = {}, {}
    try:
        with open(file, "rb") as f:
            reader = StreamReader(f, skip_magic=False, emit_chunks=False, validate_crcs=False)
            try:
                for record in reader.records:
                    if isinstance(record, Schema):
                        schemas[record.id] = record
                    elif isinstance(record, Channel):
                        channels[record.id] = record
                    elif isinstance(record, Message):
                        ch = channels.get(record.channel_id)
                        if ch is not None and ch.schema_id in schemas:
                            yield ch, schemas[ch.schema_id], record
            except (McapError, EOFError, struct.error, ValueError, KeyError, IndexError):
                return  # the truncated tail: everything before it is kept
    except OSError as e:
        raise _fail(bag, f"cannot read {file.name}: {os_error_text(e)}") from e


class BagReader:
    """An open bag: `info`, `records(topics)` / `messages(topics)` in log-time order, `deserialize`.

    Bags as people have them: a rosbag2 directory with metadata.yaml (its listed files; unlisted
    ones are `orphans` a killed recorder left, for repair-bag), a directory of MCAP files without
    one, or a single .mcap file. Read with the `mcap` library (publish times included). A file
    without its summary (truncated, or never closed) is read up to its last complete record:
    what is readable is kept and `warnings` says which file was cut short.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.exists():
            raise _fail(self.path, "does not exist")
        self.warnings: list[str] = []
        listed, orphans = self._files()
        self._schemas: dict[str, tuple[str, bytes]] = {}  # msgtype -> (encoding, definition)
        topics: dict[str, str] = {}
        counts: dict[str, int] = {}
        start, end = 2**63 - 1, 0
        self._complete: dict[Path, bool] = {}
        for file in listed:
            index = self._index(file)
            self._complete[file] = index["complete"]
            for topic, msgtype in index["topics"].items():
                if topics.setdefault(topic, msgtype) != msgtype:
                    raise _fail(self.path, f"topic {topic} has type {topics[topic]} in one file and {msgtype} in {file.name}")
            for topic, n in index["counts"].items():
                counts[topic] = counts.get(topic, 0) + n
            if index["counts"]:
                start, end = min(start, index["start"]), max(end, index["end"])
        for topic in topics:
            counts.setdefault(topic, 0)
        if not any(counts.values()) and not all(self._complete.values()):
            raise _fail(self.path, f"{', '.join(f.name for f, ok in self._complete.items() if not ok)} truncated "
                        "before its first complete message: nothing to read")
        self._store = self._make_store()
        self.info = BagInfo(self.path, topics, counts, start if end else 0, end,
                            [f.name for f in listed], orphans=orphans)

    def _files(self) -> tuple[list[Path], list[str]]:
        """The files to read, and the unlisted .mcap files of a rosbag2 directory."""
        if self.path.is_file():
            if self.path.suffix != ".mcap":
                raise _fail(self.path, "is not an .mcap file nor a bag directory")
            return [self.path], []
        meta = self.path / "metadata.yaml"
        present = sorted(self.path.glob("*.mcap"))
        if not meta.is_file():
            if not present:
                raise _fail(self.path, "no metadata.yaml and no .mcap files: not a bag")
            return present, []
        import yaml

        try:
            info = yaml.safe_load(meta.read_text())["rosbag2_bagfile_information"]
            names = [Path(p).name for p in info.get("relative_file_paths", [])]
        except Exception as e:
            raise _fail(self.path, f"metadata.yaml is unreadable ({_short(e)})") from e
        if info.get("storage_identifier", "mcap") != "mcap":
            raise _fail(self.path, f"storage {info.get('storage_identifier')!r}: only MCAP bags are read "
                        "(convert with `ros2 bag convert`)")
        missing = [n for n in names if not (self.path / n).is_file()]
        if missing:
            raise _fail(self.path, f"{', '.join(missing)} listed in metadata.yaml but missing")
        return [self.path / n for n in names], [p.name for p in present if p.name not in names]

    def _index(self, file: Path) -> dict:
        """Topics, types, counts and time span of one file: from its summary, else by reading it."""
        from mcap.reader import make_reader

        out = {"topics": {}, "counts": {}, "start": 2**63 - 1, "end": 0, "complete": True}
        try:
            with open(file, "rb") as f:
                summary = make_reader(f).get_summary()
        except Exception:  # no footer / summary: a truncated or unfinished file
            summary = None
        if summary is not None and summary.statistics is not None:
            for cid, ch in summary.channels.items():
                schema = summary.schemas.get(ch.schema_id)
                if schema is None:
                    continue
                out["topics"][ch.topic] = schema.name
                self._schemas.setdefault(schema.name, (schema.encoding, schema.data))
                n = summary.statistics.channel_message_counts.get(cid, 0)
                out["counts"][ch.topic] = out["counts"].get(ch.topic, 0) + n
            if summary.statistics.message_count:
                out["start"], out["end"] = summary.statistics.message_start_time, summary.statistics.message_end_time
            return out
        out["complete"] = False
        n = 0
        for topic, t, _, _ in self._stream(file, out):
            out["counts"][topic] = out["counts"].get(topic, 0) + 1
            out["start"], out["end"] = min(out["start"], t), max(out["end"], t)
            n += 1
        self.warnings.append(f"bag {self.path}: {file.name} is truncated (no summary); {n} complete messages "
                             "in it are used, what follows is lost")
        return out

    def _stream(self, file: Path, index: dict | None = None):
        """(topic, log_time, data, publish_time) of every complete message, in file order."""
        for ch, schema, message in _complete_messages(self.path, file):
            self._schemas.setdefault(schema.name, (schema.encoding, schema.data))
            if index is not None:
                index["topics"][ch.topic] = schema.name
            yield ch.topic, message.log_time, message.data, message.publish_time

    def _make_store(self):
        """The distro type store plus any type defined only in the bag (custom messages)."""
        from rosbags.typesys import get_types_from_idl, get_types_from_msg

        base = typestore()
        missing = {}
        for msgtype, (encoding, data) in self._schemas.items():
            if msgtype in base.fielddefs or not data:
                continue
            try:
                text = bytes(data).decode()
                missing.update(get_types_from_idl(text) if encoding == "ros2idl" else get_types_from_msg(text, msgtype))
            except Exception as e:
                raise _fail(self.path, f"unparsable definition of {msgtype} ({_short(e)})") from e
        if not missing:
            return base
        from rosbags.typesys import Stores, get_typestore

        store = get_typestore(Stores.ROS2_KILTED)  # a fresh copy: never extend the shared one
        store.register(missing)
        return store

    @property
    def topics(self) -> dict[str, str]:
        return dict(self.info.topics)

    def messages(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log_time_ns, raw CDR) in log-time order (write order for our bags)."""
        for topic, t, raw, _ in self.records(topics):
            yield topic, t, raw

    def records(self, topics: Iterable[str] | None = None) -> Iterator[tuple[str, int, bytes, int]]:
        """(topic, log_time_ns, raw CDR, publish_time_ns), file by file in log-time order."""
        from mcap.exceptions import McapError
        from mcap.reader import make_reader

        wanted = None if topics is None else set(topics)
        for name in self.info.files:
            path = self.path if self.path.is_file() else self.path / name
            if not self._complete.get(path, True):
                yield from (m for m in self._stream(path) if wanted is None or m[0] in wanted)  # written in log order
                continue
            try:
                with open(path, "rb") as f:
                    reader = make_reader(f)
                    for _, channel, message in reader.iter_messages(topics=None if wanted is None else list(wanted),
                                                                     log_time_order=True):
                        yield channel.topic, message.log_time, message.data, message.publish_time
            except DataError:
                raise
            except (McapError, OSError, EOFError, ValueError, KeyError, IndexError, struct.error) as e:
                raise _fail(self.path, f"{name}: corrupt MCAP data ({type(e).__name__}: {_short(e)}); "
                            "try `robot-rl dataset repair-bag`") from e

    def deserialize(self, raw, msgtype: str, topic: str = "?"):
        try:
            return self._store.deserialize_cdr(raw, msgtype)
        except Exception as e:
            raise _fail(self.path, f"topic {topic}: undecodable {msgtype} message ({type(e).__name__}: {_short(e)})") from e

    @property
    def store(self):
        return self._store

    def close(self) -> None:
        pass  # files are opened per read

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_bag(path) -> BagReader:
    return BagReader(path)


def read_events(reader: BagReader) -> list[dict]:
    """The recorder's episode markers (start/stop/discard JSON) in order, with their log time."""
    if EVENTS_TOPIC not in reader.topics:
        return []
    events = []
    for _, t, raw in reader.messages([EVENTS_TOPIC]):
        msg = reader.deserialize(raw, STRING_TYPE, EVENTS_TOPIC)
        try:
            event = json.loads(msg.data)
        except json.JSONDecodeError as e:
            raise _fail(reader.path, f"topic {EVENTS_TOPIC}: marker is not JSON ({e})") from e
        event["log_time_ns"] = t
        events.append(event)
    return events


def event_message(event: dict) -> bytes:
    """A marker event as serialized std_msgs/String."""
    from rosbags.typesys.stores.ros2_kilted import std_msgs__msg__String as String

    return serialize(String(data=json.dumps(event, sort_keys=True)), STRING_TYPE)


def _short(e: BaseException) -> str:
    return " ".join(str(e).split())[:300] or type(e).__name__


# ---------------------------------------------------------------------------- repair


def repair_bag(path: str | os.PathLike) -> dict:
    """Salvage unlisted MCAP files of a bag whose recorder died (SIGKILL, power cut).

    Every complete chunk of each unlisted `.mcap` file is kept (the writer flushes one at least
    every second), rewritten into a new closed, listed file; the partial file is kept beside it
    as `<name>.mcap.orig` (an original is never destroyed).
    A bag with no `metadata.yaml` at all gets one. Returns {file: messages recovered}.
    """
    path = Path(path)
    if not path.is_dir():
        raise _fail(path, "is not a bag directory")
    meta_path = path / "metadata.yaml"
    listed: list[str] = []
    if meta_path.is_file():
        import yaml

        try:
            info = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]
            listed = [Path(p).name for p in info.get("relative_file_paths", [])]
        except Exception as e:
            raise _fail(path, f"metadata.yaml is unreadable ({_short(e)}); move it away and run repair again") from e
    partial = sorted(p for p in path.glob("*.mcap") if p.name not in listed)
    if not partial:
        return {}
    # Move partial files out of the way of new file names, then append what they hold.
    moved = []
    for i, file in enumerate(partial):
        target = path / f".partial-{time.time_ns()}-{i}-{file.name}"
        os.rename(file, target)
        moved.append((file.name, target))
    writer = _reopen_for_repair(path, listed)
    recovered = {}
    for name, file in moved:
        n = 0
        for ch, schema, message in _complete_messages(path, file):
            writer.add_topic(ch.topic, schema.name, _qos_from_channel(ch))
            writer.write(ch.topic, message.log_time, message.data, message.publish_time)
            n += 1
        writer.roll()
        writer._write_metadata()  # a bag that had none gets one even when nothing was salvaged
        os.rename(file, path / f"{name}.orig")  # kept, never destroyed (no longer read as part of the bag)
        recovered[name] = n
    return recovered


def _qos_from_channel(ch) -> list:
    text = (ch.metadata or {}).get("offered_qos_profiles", "")
    if not text:
        return []
    from rosbags.rosbag2.metadata import parse_qos

    try:
        return parse_qos(text)
    except Exception:
        return []


def _reopen_for_repair(path: Path, listed: list[str]) -> BagWriter:
    """A BagWriter continuing an existing bag directory (its listed files kept as closed files)."""
    writer = BagWriter.__new__(BagWriter)
    from rosbags.rosbag2.enums import CompressionMode

    writer.path = path
    writer._compression = CompressionMode.NONE
    writer.split_bytes = DEFAULT_SPLIT_BYTES
    writer.flush_s = 1.0
    writer.fsync = True
    writer.custom_data = {}
    writer.topics = {}
    writer.closed = []
    writer.bytes_written = 0
    writer._storage = None
    writer._file_start, writer._file_end, writer._file_bytes = 2**63 - 1, 0, 0
    writer._last_flush = time.monotonic()
    writer._broken = None
    if listed:
        import yaml

        info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
        writer.custom_data = dict(info.get("custom_data") or {})
        from rosbags.rosbag2.metadata import parse_qos

        for entry in info.get("topics_with_message_count", []):
            tm = entry["topic_metadata"]
            t = _Topic(len(writer.topics) + 1, tm["name"], tm["type"],
                       parse_qos(tm.get("offered_qos_profiles", [])), int(entry["message_count"]))
            writer.topics[t.topic] = t
        for f in info.get("files", []):
            writer.closed.append(_ClosedFile(Path(f["path"]).name, f["starting_time"]["nanoseconds_since_epoch"],
                                             f["duration"]["nanoseconds"], f["message_count"]))
    return writer
