"""bag.py: rosbag2 MCAP bags written with rosbags, read back with rosbags and with the independent
`mcap` + `mcap_ros2` reader; crash (SIGKILL), disk-full, permission and corruption behaviour."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml
from mcap.reader import make_reader
from mcap_ros2.decoder import DecoderFactory
from rawmsgs import image, joint_state, sim_ticks
from rosbags.rosbag2 import Reader

from robot_rl.data.bag import BagWriter, header_stamp_ns, open_bag, repair_bag, write_bag
from robot_rl.errors import DataError

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'test'}"}
MSGTYPES = {"/joint_states": "sensor_msgs/msg/JointState", "/task/object_poses": "geometry_msgs/msg/PoseArray",
            "/task/reward": "std_msgs/msg/Float32", "/task/success": "std_msgs/msg/Bool",
            "/camera/front/image_raw": "sensor_msgs/msg/Image", "/camera/front/camera_info": "sensor_msgs/msg/CameraInfo",
            "/forward_position_controller/commands": "std_msgs/msg/Float64MultiArray"}


def mcap_read(bag: Path) -> dict:
    """Per-topic decoded messages of every listed file, with the mcap/mcap_ros2 reader only."""
    info = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    out = {}
    for name in info["relative_file_paths"]:
        with open(bag / name, "rb") as f:
            reader = make_reader(f, decoder_factories=[DecoderFactory()])
            for schema, channel, message, decoded in reader.iter_decoded_messages():
                out.setdefault(channel.topic, []).append((message.log_time, schema.name, decoded))
    return out


def test_round_trip_with_rosbags_and_mcap(tmp_path):
    msgs = sim_ticks(30, cameras=("front",))
    bag = write_bag(tmp_path / "b", [(topic, MSGTYPES[topic], t, raw) for topic, t, raw in msgs])
    sent = {}
    for topic, _, _ in msgs:
        sent[topic] = sent.get(topic, 0) + 1
    # rosbags, through our reader: counts, order, bytes unchanged
    with open_bag(bag) as r:
        assert r.info.counts == sent and r.info.orphans == []
        got = list(r.messages())
        assert [(m[0], m[1]) for m in got] == [(m[0], m[1]) for m in msgs]
        assert all(bytes(a[2]) == b[2] for a, b in zip(got, msgs))
    # rosbags' own Reader, as a third party would use it
    with Reader(bag) as r:
        assert {c.topic: c.msgcount for c in r.connections} == sent
        assert r.message_count == len(msgs)
    # the independent reader: same counts, decodable with the schemas stored in the file
    decoded = mcap_read(bag)
    assert {t: len(v) for t, v in decoded.items()} == sent
    js = decoded["/joint_states"]
    assert js[3][1] == "sensor_msgs/msg/JointState" and js[3][2].position[0] == 3.0
    assert list(js[3][2].name)[-1] == "finger_joint"
    img = decoded["/camera/front/image_raw"][5][2]
    assert (img.width, img.height, img.encoding) == (64, 48, "rgb8") and bytes(img.data)[:1] == b"\x05"
    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 9 and meta["storage_identifier"] == "mcap" and meta["message_count"] == len(msgs)
    assert {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]} == sent
    assert all(t["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
               for t in meta["topics_with_message_count"])


def test_roll_and_split_make_listed_complete_files(tmp_path):
    w = BagWriter(tmp_path / "b", split_bytes=3_000_000)
    w.add_topic("/img", "sensor_msgs/msg/Image")
    w.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    raw = image(1, np.zeros((480, 640, 3), np.uint8))  # 0.92 MB
    for i in range(10):
        w.write("/img", 1000 + i, raw)
        w.write("/joint_states", 1000 + i, joint_state(i, np.zeros(8)))
        if i == 1:
            w.roll()
    w.close()
    files = yaml.safe_load((tmp_path / "b" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]["files"]
    assert [f["path"] for f in files] == [f"b_{i}.mcap" for i in range(len(files))] and len(files) >= 4
    assert sum(f["message_count"] for f in files) == 20
    assert {t: len(v) for t, v in mcap_read(tmp_path / "b").items()} == {"/img": 10, "/joint_states": 10}
    with pytest.raises(DataError, match="already exists"):
        BagWriter(tmp_path / "b")


def test_header_stamp_read_from_raw_bytes():
    assert header_stamp_ns(joint_state(12_345_678_901, np.zeros(8))) == 12_345_678_901
    assert header_stamp_ns(b"\x00\x01") == 0


def one_line(e) -> str:
    text = str(e.value)
    assert "\n" not in text
    return text


def test_bad_bags_give_one_line_errors(tmp_path):
    msgs = sim_ticks(200, cameras=("front",))
    good = write_bag(tmp_path / "good", [(t, MSGTYPES[t], s, r) for t, s, r in msgs])
    with pytest.raises(DataError) as e:
        open_bag(tmp_path / "nope")
    assert "does not exist" in one_line(e)
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as e:
        open_bag(tmp_path / "notes.txt")
    assert "not an .mcap file nor a bag directory" in one_line(e)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as e:
        open_bag(tmp_path / "empty")
    assert "no metadata.yaml and no .mcap files" in one_line(e)
    # garbage over the structure (payload bytes carry no checksum in rosbag2 MCAP: undetectable)
    corrupt = tmp_path / "corrupt-head"
    shutil.copytree(good, corrupt)
    f = corrupt / "good_0.mcap"
    data = bytearray(f.read_bytes())
    data[8:64] = bytes(range(56))
    f.write_bytes(bytes(data))
    try:
        with open_bag(corrupt) as r:
            for topic, _, raw in r.messages():
                r.deserialize(raw, MSGTYPES[topic], topic)
    except DataError as e:
        assert f"bag {corrupt}" in str(e) and "\n" not in str(e)
    # metadata problems
    broken = tmp_path / "broken-meta"
    shutil.copytree(good, broken)
    (broken / "metadata.yaml").write_text("rosbag2_bagfile_information: [not, a, dict")
    with pytest.raises(DataError) as e:
        open_bag(broken)
    assert "unreadable" in one_line(e)
    (broken / "metadata.yaml").unlink()
    (broken / "good_0.mcap").unlink()
    shutil.copy(good / "metadata.yaml", broken / "metadata.yaml")
    with pytest.raises(DataError) as e:
        open_bag(broken)
    assert "good_0.mcap listed in metadata.yaml but missing" in one_line(e)


def test_bags_as_people_have_them_single_file_no_metadata_truncated(tmp_path):
    """A single .mcap file and a folder without metadata.yaml read like a rosbag2 bag; a truncated
    file gives what it holds up to the cut, and a warning naming it (the bag stays usable)."""
    msgs = sim_ticks(200, cameras=("front",))
    good = write_bag(tmp_path / "good", [(t, MSGTYPES[t], s, r) for t, s, r in msgs])
    with open_bag(good) as r:
        expected = list(r.messages())
    with open_bag(good / "good_0.mcap") as r:
        assert list(r.messages()) == expected and r.warnings == []
        assert sum(r.info.counts.values()) == len(msgs)
    nometa = tmp_path / "nometa"
    shutil.copytree(good, nometa)
    (nometa / "metadata.yaml").unlink()
    with open_bag(nometa) as r:
        assert list(r.messages()) == expected and r.info.topics == {t: MSGTYPES[t] for t in MSGTYPES}
    # several chunks, then cut: the complete ones are read
    w = BagWriter(tmp_path / "chunked", flush_s=3600)
    for topic in MSGTYPES:
        w.add_topic(topic, MSGTYPES[topic])
    for i, (topic, t, raw) in enumerate(msgs):
        w.write(topic, t, raw)
        if i % 70 == 69:
            w.flush()
    w.close()
    f = tmp_path / "chunked" / "chunked_0.mcap"
    f.write_bytes(f.read_bytes()[: int(f.stat().st_size * 0.6)])
    with open_bag(tmp_path / "chunked") as r:
        salvaged = list(r.messages())
        assert any("chunked_0.mcap is truncated" in w for w in r.warnings)
    assert 0.3 * len(msgs) < len(salvaged) < len(msgs)
    assert salvaged == expected[: len(salvaged)]


CHILD_WRITER = textwrap.dedent("""
    import sys, numpy as np
    from rawmsgs import image, joint_state
    from robot_rl.data.bag import BagWriter
    w = BagWriter(sys.argv[1], flush_s=3600)
    w.add_topic("/img", "sensor_msgs/msg/Image")
    w.add_topic("/joint_states", "sensor_msgs/msg/JointState")
    raw = image(1, np.zeros((48, 64, 3), np.uint8))
    t = 0
    for segment in range(1000):
        for i in range(50):
            t += 1
            w.write("/img", t, raw)
            w.write("/joint_states", t, joint_state(t, np.zeros(8)))
        if segment < 2:
            w.roll()  # an episode ended: listed
        else:
            w.flush()  # chunks handed to the OS, file still open
        print(segment, flush=True)
        if segment >= 4:
            import time; time.sleep(60)
""")


@pytest.mark.integration
def test_sigkill_keeps_closed_files_readable_and_repair_salvages(tmp_path):
    bag = tmp_path / "b"
    proc = subprocess.Popen([sys.executable, "-c", CHILD_WRITER, str(bag)], env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(5):
            assert proc.stdout.readline().strip() != ""
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # readable right away: the two rolled files, nothing half-written listed
    with open_bag(bag) as r:
        assert r.info.counts == {"/img": 100, "/joint_states": 100}
        assert r.info.orphans == ["b.mcap"]
        assert sum(1 for _ in r.messages()) == 200
    assert {t: len(v) for t, v in mcap_read(bag).items()} == {"/img": 100, "/joint_states": 100}
    # repair keeps every flushed chunk of the open file
    recovered = repair_bag(bag)
    assert recovered == {"b.mcap": 300}
    with open_bag(bag) as r:
        assert r.info.counts == {"/img": 250, "/joint_states": 250} and r.info.orphans == []
        times = [t for _, t, _ in r.messages()]
        assert times == sorted(times)
    assert {t: len(v) for t, v in mcap_read(bag).items()} == {"/img": 250, "/joint_states": 250}
    assert repair_bag(bag) == {}


CHILD_FILL = textwrap.dedent("""
    import sys, numpy as np
    from rawmsgs import image
    from robot_rl.data.bag import BagWriter
    from robot_rl.errors import DataError
    try:
        w = BagWriter(sys.argv[1])
        w.add_topic("/img", "sensor_msgs/msg/Image")
        raw = image(1, np.zeros((480, 640, 3), np.uint8))
        for i in range(100):
            w.write("/img", i + 1, raw)
            if (i + 1) % int(sys.argv[2]) == 0:
                w.roll()
        w.close()
    except DataError as e:
        print("ERROR", e)
        sys.exit(2)
""")


def private_tmpfs(tmp_path, size="4m", options=""):
    """A command prefix that runs a child with a small tmpfs mounted at tmp_path/fs, or None."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        return None
    mnt = tmp_path / "fs"
    mnt.mkdir()
    probe = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f"mount -t tmpfs -o size={size} none {mnt}"], capture_output=True)
    if probe.returncode != 0:
        return None
    return mnt, ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                 f'mount -t tmpfs -o size={size}{options} none {mnt} && exec "$@"', "sh"]


@pytest.mark.integration
def test_disk_full_is_one_clear_error(tmp_path):
    fs = private_tmpfs(tmp_path)
    if fs is None:
        pytest.skip("needs root and unshare to mount a small private tmpfs")
    mnt, prefix = fs
    script = CHILD_FILL + textwrap.dedent("""
        finally:
            from robot_rl.data.bag import open_bag
            with open_bag(sys.argv[1]) as r:
                print("LISTED", r.info.counts.get("/img", 0), sum(1 for _ in r.messages()))
    """)
    out = subprocess.run(prefix + [sys.executable, "-c", script, str(mnt / "b"), "1"], env=ENV,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    error, listed = out.stdout.strip().splitlines()
    assert error.startswith(f"ERROR bag {mnt / 'b'}: ") and "No space left on device (disk full" in error
    # the files closed before the disk filled are listed and readable (each holds one image)
    _, n, read = listed.split()
    assert int(n) >= 2 and int(read) == int(n)


@pytest.mark.integration
def test_file_size_limit_is_one_clear_error(tmp_path):
    code = "import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); " \
           "resource.setrlimit(resource.RLIMIT_FSIZE, (3_000_000, 3_000_000))\n" + CHILD_FILL
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b"), "1000"], env=ENV, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert out.stdout.startswith(f"ERROR bag {tmp_path / 'b'}: cannot write: File too large")
    assert len(out.stdout.strip().splitlines()) == 1


def no_write_permission(directory: Path):
    """A command prefix under which `directory` is not writable (root: drop DAC override), or None."""
    directory.chmod(0o555)
    if os.geteuid() != 0:
        return []
    if shutil.which("setpriv"):
        return ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all"]
    return None


@pytest.mark.integration
def test_permission_denied_is_one_clear_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    prefix = no_write_permission(ro)
    if prefix is None:
        pytest.skip("cannot drop root's permission override")
    try:
        out = subprocess.run(prefix + [sys.executable, "-c", CHILD_FILL, str(ro / "b"), "1"], env=ENV,
                             capture_output=True, text=True, timeout=60)
    finally:
        ro.chmod(0o755)
    assert out.returncode == 2, out.stderr
    assert out.stdout.strip() == f"ERROR bag {ro / 'b'}: cannot create bag: Permission denied " \
                                 "(no write permission; choose a writable directory)"
