"""Collect submissions from nbgrader's exchange, trusting nothing in it (`make collect`).

Stock ``nbgrader collect`` copies ``<exchange>/<course>/inbound/<student>+<assignment>+<timestamp>+<random>``
into ``submitted/<student>/<assignment>/``: it takes the student id from the folder's
name, only warns when the folder's owner is someone else, and copies with shutil, which
follows symbolic links (as root, a link to ``source/`` brings the instructor's solution in).
This replaces it:

- the student id is the *owner* of the inbound entry (its uid's account name); an entry
  whose name claims another student, or whose owner has no account, is refused (listed,
  never collected). Among a student's verified entries the latest by the timestamp in the
  name is taken (nbgrader's rule);
- nothing is followed: every name is opened relative to a directory descriptor with
  O_NOFOLLOW; links, FIFOs, devices, sockets and sub-folders are refused (listed, never
  copied); a file must be a regular file owned by the same student with one link (a hard
  link to someone else's file has their owner or a second link);
- the reading is done by a child process that has dropped to the student's own uid and
  gids (when collect runs as root), so it can read nothing the student could not; it
  streams the files to the parent, which writes only into ``submitted/<student>/<assignment>/``
  (a fresh folder, swapped in when complete);
- bounded: at most MAX_FILES top-level files, MAX_FILE_BYTES each, MAX_ENTRY_BYTES together;
- the submission time recorded in ``timestamp.txt`` is the later of the one the entry's name
  claims and the last status change of the entry and its files (which its owner cannot set
  back), so a back-dated name does not make a late submission early.

The grader then takes only the notebook(s) from ``submitted/`` (llmcourse.grading.grader).
"""
from __future__ import annotations

import datetime as dt
import json
import os
import pwd
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

MAX_FILES = 64
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_ENTRY_BYTES = 200 * 1024 * 1024
OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f %Z"


class CollectError(RuntimeError):
    pass


@dataclass
class Entry:
    name: str
    student: str
    timestamp: dt.datetime
    uid: int


@dataclass
class Report:
    collected: list[str] = field(default_factory=list)     # students
    skipped: list[str] = field(default_factory=list)       # already collected, not newer
    refused: list[tuple[str, str]] = field(default_factory=list)   # (entry or file, why)


def _utc(when: dt.datetime) -> dt.datetime:
    return when.replace(tzinfo=dt.timezone.utc) if when.tzinfo is None else when.astimezone(dt.timezone.utc)


def parse_entry_name(name: str, assignment: str) -> tuple[str, dt.datetime] | None:
    """(claimed student, timestamp) of an inbound entry name, or None when it is not one of `assignment`."""
    from nbgrader.utils import parse_utc
    parts = name.rsplit("+", 3)
    if len(parts) == 4:
        student, assign, stamp, _ = parts
    else:
        parts = name.rsplit("+", 2)
        if len(parts) != 3:
            return None
        student, assign, stamp = parts
    if assign != assignment or not student:
        return None
    try:
        return student, _utc(parse_utc(stamp))
    except Exception:  # noqa: BLE001 (dateutil raises several kinds)
        return None


def _account(uid: int) -> pwd.struct_passwd | None:
    try:
        return pwd.getpwuid(uid)
    except KeyError:
        return None


def verified_entries(inbound_fd: int, assignment: str, report: Report) -> dict[str, Entry]:
    """The latest verified entry of each student (owner == claimed id); refusals go to the report."""
    latest: dict[str, Entry] = {}
    for name in sorted(os.listdir(inbound_fd)):
        parsed = parse_entry_name(name, assignment)
        if parsed is None:
            continue
        claimed, stamp = parsed
        st = os.stat(name, dir_fd=inbound_fd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            report.refused.append((name, "not a folder (a link or a special file)"))
            continue
        acct = _account(st.st_uid)
        if acct is None:
            report.refused.append((name, f"owned by uid {st.st_uid}, which has no account"))
            continue
        if acct.pw_name != claimed:
            report.refused.append((name, f"claims to be {claimed}'s but is owned by {acct.pw_name}"))
            continue
        if st.st_uid == 0 and claimed != "root":
            report.refused.append((name, "owned by root"))
            continue
        if claimed not in latest or stamp > latest[claimed].timestamp:
            latest[claimed] = Entry(name=name, student=claimed, timestamp=stamp, uid=st.st_uid)
    return latest


# ------------------------------------------------------------------ the unprivileged reader
# The child writes, per file: a header line (JSON: name, size, ctime) and then exactly size
# bytes; per refused name: a line {"refused": name, "why": ...}; then {"end": true, "ctime": ...}.

def _read_entry(entry_fd: int, uid: int, out) -> None:
    total = 0
    files = 0
    latest_change = os.fstat(entry_fd).st_ctime
    for name in sorted(os.listdir(entry_fd)):
        def refuse(why: str, name=name):
            out.write(json.dumps({"refused": name, "why": why}).encode() + b"\n")
        try:
            st = os.stat(name, dir_fd=entry_fd, follow_symlinks=False)
        except OSError as exc:
            refuse(f"cannot be read ({exc.strerror})")
            continue
        if stat.S_ISLNK(st.st_mode):
            refuse("a symbolic link (never followed)")
            continue
        if stat.S_ISDIR(st.st_mode):
            refuse("a folder (only the files at the top of a submission are collected)")
            continue
        if not stat.S_ISREG(st.st_mode):
            refuse("a special file (FIFO, device or socket)")
            continue
        if st.st_nlink != 1:
            refuse("a file with more than one hard link")
            continue
        if st.st_uid != uid:
            refuse("owned by someone other than the student")
            continue
        if st.st_size > MAX_FILE_BYTES:
            refuse(f"over {MAX_FILE_BYTES // 2**20} MB")
            continue
        if files >= MAX_FILES or total + st.st_size > MAX_ENTRY_BYTES:
            refuse("over the limit of files or bytes for one submission")
            continue
        try:
            fd = os.open(name, OPEN_FILE, dir_fd=entry_fd)
        except OSError as exc:
            refuse(f"cannot be opened ({exc.strerror})")
            continue
        with os.fdopen(fd, "rb") as fh:
            fst = os.fstat(fh.fileno())
            if (fst.st_ino, fst.st_dev) != (st.st_ino, st.st_dev) or not stat.S_ISREG(fst.st_mode):
                refuse("changed while it was read")
                continue
            data = fh.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            refuse(f"over {MAX_FILE_BYTES // 2**20} MB")
            continue
        files += 1
        total += len(data)
        latest_change = max(latest_change, fst.st_ctime)
        out.write(json.dumps({"name": name, "size": len(data)}).encode() + b"\n")
        out.write(data)
    out.write(json.dumps({"end": True, "ctime": latest_change}).encode() + b"\n")
    out.flush()


def _drop_to(uid: int) -> None:
    if os.geteuid() != 0:
        return
    acct = _account(uid)
    gid = acct.pw_gid if acct else uid
    groups = os.getgrouplist(acct.pw_name, gid) if acct else [gid]
    os.setgroups(groups)
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)
    if os.geteuid() != uid:
        raise CollectError("could not drop to the student's uid")


def read_as_owner(entry_fd: int, uid: int) -> tuple[dict[str, bytes], list[tuple[str, str]], float]:
    """Read an entry's files in a child process running as `uid`: ({name: bytes}, refused, last change)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:   # the child: drop privileges, read, stream, exit (never returns)
        code = 0
        try:
            os.close(r)
            _drop_to(uid)
            with os.fdopen(w, "wb") as out:
                _read_entry(entry_fd, uid, out)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    files: dict[str, bytes] = {}
    refused: list[tuple[str, str]] = []
    ctime = 0.0
    ended = False
    with os.fdopen(r, "rb") as inp:
        budget = MAX_ENTRY_BYTES + MAX_FILES * 4096 + 65536
        while True:
            header = inp.readline(65536)
            if not header:
                break
            msg = json.loads(header)
            if msg.get("end"):
                ctime, ended = float(msg["ctime"]), True
                break
            if "refused" in msg:
                refused.append((str(msg["refused"]), str(msg["why"])))
                continue
            size = int(msg["size"])
            budget -= size
            if budget < 0 or size > MAX_FILE_BYTES:
                raise CollectError("the reading process sent more than a submission may hold")
            data = inp.read(size)
            if len(data) != size:
                break
            files[str(msg["name"])] = data
    _, status = os.waitpid(pid, 0)
    if not ended or status != 0:
        raise CollectError("the entry could not be read as its owner")
    return files, refused, ctime


def _safe_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name


def collect(root: Path, exchange: Path, course_id: str, assignment: str, update: bool = False) -> Report:
    """Collect the latest verified submission of every student into submitted/<student>/<assignment>/."""
    report = Report()
    inbound = Path(exchange) / course_id / "inbound"
    try:
        inbound_fd = os.open(inbound, OPEN_DIR)
    except OSError as exc:
        raise CollectError(f"cannot open the exchange's inbound folder {inbound}: {exc.strerror}") from None
    try:
        for student, entry in sorted(verified_entries(inbound_fd, assignment, report).items()):
            if not _safe_name(student) or student.startswith("."):
                report.refused.append((entry.name, "not a usable student id"))
                continue
            dest = Path(root) / "submitted" / student / assignment
            existing = _existing_timestamp(dest)
            if dest.exists() and not (update and (existing is None or entry.timestamp > existing)):
                report.skipped.append(student)
                continue
            try:
                entry_fd = os.open(entry.name, OPEN_DIR, dir_fd=inbound_fd)
            except OSError as exc:
                report.refused.append((entry.name, f"cannot be opened ({exc.strerror})"))
                continue
            try:
                st = os.fstat(entry_fd)
                if st.st_uid != entry.uid:
                    report.refused.append((entry.name, "changed owner while it was collected"))
                    continue
                try:
                    files, refused, ctime = read_as_owner(entry_fd, entry.uid)
                except CollectError as exc:
                    report.refused.append((entry.name, str(exc)))
                    continue
            finally:
                os.close(entry_fd)
            report.refused.extend((f"{entry.name}/{n}", why) for n, why in refused)
            _write(dest, files, max(entry.timestamp, dt.datetime.fromtimestamp(ctime, dt.timezone.utc)))
            report.collected.append(student)
    finally:
        os.close(inbound_fd)
    return report


def _existing_timestamp(dest: Path) -> dt.datetime | None:
    from nbgrader.utils import parse_utc
    try:
        return _utc(parse_utc((dest / "timestamp.txt").read_text().strip()))
    except Exception:  # noqa: BLE001
        return None


def _write(dest: Path, files: dict[str, bytes], when: dt.datetime) -> None:
    """A fresh folder with the files, then swapped in for the old one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.collecting"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    for name, data in files.items():
        if not _safe_name(name) or name == "timestamp.txt":
            continue
        with open(tmp / name, "xb") as fh:
            fh.write(data)
    (tmp / "timestamp.txt").write_text(when.astimezone(dt.timezone.utc).strftime(TIMESTAMP_FORMAT))
    if dest.exists():
        old = dest.parent / f".{dest.name}.old"
        if old.exists():
            shutil.rmtree(old)
        os.rename(dest, old)
        os.rename(tmp, dest)
        shutil.rmtree(old)
    else:
        os.rename(tmp, dest)


def exchange_settings(root: Path) -> tuple[Path, str]:
    """(exchange root, course id) from the course's nbgrader_config.py."""
    from traitlets.config.loader import PyFileConfigLoader
    cfg = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
    return Path(cfg.Exchange.root), str(cfg.CourseDirectory.course_id)
