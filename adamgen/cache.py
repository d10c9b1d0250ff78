"""adamgen's cache folder: the generated modules of users' specs and numba's compiled kernels.

adamgen writes nothing inside the installed package. What it caches goes to one private (mode 700) per-user folder:

    $ADAMGEN_CACHE_DIR          when set and not empty
    $XDG_CACHE_HOME/adamgen     when XDG_CACHE_HOME is an absolute path
    ~/.cache/adamgen            otherwise

``ADAMGEN_CACHE_DIR=""`` turns the cache off: spec modules go to a temporary folder removed at exit and kernels are
compiled in memory on every run.

Inside the folder, ``modules/`` holds the modules generated from users' specs (named by the hash of their source) and
``numba/<module>-<hash>/`` numba's compiled kernels of every generated module that adamgen imports, built-ins included:
one folder per module source, so that installs, checkouts and versions never mix. Any of it may be deleted at any time.

The generated modules themselves keep numba's ``cache=True`` and import nothing from adamgen (a copied-out module
caches where numba's defaults say). The redirection happens when adamgen imports them: before, a cache locator is
registered with numba (and numba-cuda) that claims exactly adamgen's module files; after, each kernel's cache is
replaced by one that checks what it reads and survives what it cannot write:

- every cache file carries a SHA-256 digest of its content and is written to a temporary name and renamed, so a
  truncated or corrupted file is detected (one warning), recompiled and rewritten, and another process never reads a
  partial file;
- a cache folder that cannot be written (read-only, full, no home folder) gives one warning; what is cached there is
  still read, the rest is compiled in memory, and spec modules go to a temporary folder (or, if nothing is writable,
  are run from memory).
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.machinery
import importlib.util
import linecache
import os
import pickle
import shutil
import sys
import tempfile
import types
import warnings
from pathlib import Path

ENVIRONMENT_VARIABLE = "ADAMGEN_CACHE_DIR"


class CacheWarning(UserWarning):
    """adamgen's cache could not be used as intended (a folder that cannot be written, a damaged file); work goes on."""


def cache_dir() -> Path | None:
    """The cache folder (see the module's doc), or None when ``ADAMGEN_CACHE_DIR`` is set to the empty string."""
    value = os.environ.get(ENVIRONMENT_VARIABLE)
    if value is not None:
        return Path(value).expanduser().absolute() if value else None
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        return Path(xdg) / "adamgen"
    try:
        return Path.home() / ".cache" / "adamgen"
    except RuntimeError:  # no HOME and no password entry: nowhere to cache; behave as an unwritable folder
        _cannot_write(Path("~/.cache/adamgen"), OSError("the home folder is unknown"))
        return None


# -- warnings and unwritable folders -----------------------------------------------------------------------------------

_unwritable: set[str] = set()
_warned: set[str] = set()


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, CacheWarning, stacklevel=3)


def _cannot_write(root: Path, error: OSError) -> None:
    """Remember that ``root`` cannot be written in this process, with one warning."""
    _unwritable.add(str(root))
    reason = error.strerror or str(error)
    _warn_once(f"unwritable:{root}", f"adamgen cannot write to its cache folder {root} ({reason}): kernels not cached "
               f"there yet are compiled in memory on every run, and modules generated from spec files that are not "
               f"there yet go to a temporary folder. Set {ENVIRONMENT_VARIABLE} to a writable folder "
               f"({ENVIRONMENT_VARIABLE}=\"\" turns the cache off).")


def _make_dirs(folder: Path, root: Path) -> None:
    os.makedirs(root, mode=0o700, exist_ok=True)  # private: other users can neither read nor plant cached code
    os.makedirs(folder, exist_ok=True)


# -- generated modules of users' specs ---------------------------------------------------------------------------------

_module_folders: dict[str, Path | None] = {}  # real path of a folder of generated modules -> its cache root or None
_memory_files: set[str] = set()  # pseudo file names of modules run from memory
_temporary: list[Path] = []


def _temporary_folder() -> Path | None:
    """This process's private temporary folder for generated modules, removed at exit; None if none can be made."""
    if not _temporary:
        try:
            folder = Path(tempfile.mkdtemp(prefix="adamgen-"))
        except OSError:
            return None
        pid = os.getpid()
        atexit.register(lambda: os.getpid() == pid and shutil.rmtree(folder, ignore_errors=True))
        _temporary.append(folder)
        _module_folders[os.path.realpath(folder)] = None
    return _temporary[0]


def module_file(module_name: str, source: str) -> Path | None:
    """A file holding ``source``, to import as ``module_name``: ``<cache>/modules/<module_name>.py`` (an existing file
    with this source is used as is, even in a read-only folder), else one in a temporary folder; None if nothing is
    writable."""
    from .render import write_if_changed

    root = cache_dir()
    if root is not None:
        path = root / "modules" / f"{module_name}.py"
        try:
            _make_dirs(path.parent, root)
            write_if_changed(path, source)
        except OSError as error:
            _cannot_write(root, error)
        else:
            _module_folders[os.path.realpath(path.parent)] = root
            return path
    folder = _temporary_folder()
    if folder is not None:
        try:
            write_if_changed(folder / f"{module_name}.py", source)
            return folder / f"{module_name}.py"
        except OSError:
            pass
    return None


def import_generated(module_name: str, source: str, target: str) -> types.ModuleType:
    """Import generated ``source`` as ``module_name`` from :func:`module_file` (or from memory when no file can be
    written), with its kernels cached in the cache folder."""
    path = module_file(module_name, source)
    if module_name in sys.modules:
        return sys.modules[module_name]
    _register_locator(target)
    if path is not None:
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        run = spec.loader.exec_module
    else:
        filename = f"<adamgen generated module {module_name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)  # tracebacks show the code
        _memory_files.add(filename)
        code = compile(source, filename, "exec")
        module = types.ModuleType(module_name)

        def run(module):
            exec(code, module.__dict__)
    sys.modules[module_name] = module
    try:
        run(module)
    except BaseException:
        del sys.modules[module_name]
        raise
    attach(module)
    return module


# -- where numba caches the kernels of generated modules ---------------------------------------------------------------

@functools.cache
def _builtin_folders() -> frozenset[str]:
    from .resources import generated_dir

    return frozenset(os.path.realpath(generated_dir() / target) for target in ("cpu", "cuda"))


def _owner(py_file: str) -> tuple[bool, Path | None]:
    """Whether ``py_file`` is a module generated by adamgen, and the cache root for its kernels (None: none)."""
    if py_file in _memory_files:
        return True, None
    folder = os.path.realpath(os.path.dirname(py_file))
    if folder in _builtin_folders():
        return True, cache_dir()
    if folder in _module_folders:
        return True, _module_folders[folder]
    return False, None


@functools.lru_cache(maxsize=None)
def _source_digest(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class _Locator:
    """numba's cache locator for adamgen's generated modules: ``<cache>/numba/<module>-<source hash>/``.

    Registered first with numba's (and numba-cuda's) locators; it claims only adamgen's module files, and nothing is
    written until a kernel is saved, so importing a module writes nothing."""

    def __init__(self, py_func, py_file: str, root: Path | None):
        self.root = root
        self._lineno = py_func.__code__.co_firstlineno
        if root is None:
            self._stamp = "in memory"
            self._folder = ""
        else:
            st = os.stat(py_file)
            self._stamp = _source_digest(os.path.realpath(py_file), st.st_mtime_ns, st.st_size)
            stem = Path(py_file).stem  # a spec module's name already ends with the hash of its source
            self._folder = str(root / "numba" / (stem if stem.endswith(self._stamp[:16]) else
                                                 f"{stem}-{self._stamp[:16]}"))

    @classmethod
    def from_function(cls, py_func, py_file):
        ours, root = _owner(py_file)
        return cls(py_func, py_file, root) if ours else None

    def ensure_cache_path(self):
        if self.root is None:
            raise OSError("adamgen's cache is off")
        _make_dirs(Path(self._folder), self.root)

    def get_cache_path(self):
        return self._folder

    def get_source_stamp(self):
        return self._stamp

    def get_disambiguator(self):
        return str(self._lineno)


def _register_locator(target: str) -> None:
    """Put :class:`_Locator` first in numba's locators (numba-cuda's too for ``target == "cuda"``)."""
    import numba.core.caching

    modules = [numba.core.caching]
    if target == "cuda":
        try:
            import numba.cuda.core.caching
        except ImportError:  # the CUDA simulator, or no CUDA runtime: the module's own import reports it
            pass
        else:
            modules.append(numba.cuda.core.caching)
    for module in modules:
        locators = module.CacheImpl._locator_classes
        if _Locator not in locators:
            locators.insert(0, _Locator)


# -- checked cache files -----------------------------------------------------------------------------------------------

class _Damaged(Exception):
    pass


class _CacheFile:
    """One kernel's compiled overloads in its cache folder, one file per overload: ``<base>.<key hash>.nbc``.

    Each file is ``MAGIC + sha256(body) + body`` with ``body`` the pickled ``(version, source stamp, key, data)``,
    written to a temporary name and renamed into place. Reading checks the digest (a truncated or corrupted file raises
    ``_Damaged``), then the version, stamp and key (a mismatch is a miss)."""

    MAGIC = b"adamgen numba cache 1\n"

    def __init__(self, folder: str, base: str, stamp, version: str, dumps):
        self._folder, self._base, self._stamp, self._version, self._dumps = folder, base, stamp, version, dumps

    def path(self, key) -> str:
        digest = hashlib.sha256(repr(key).encode()).hexdigest()[:20]
        return os.path.join(self._folder, f"{self._base}.{digest}.nbc")

    def load(self, key):
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        n = len(self.MAGIC)
        if raw[:n] != self.MAGIC or hashlib.sha256(raw[n + 32:]).digest() != raw[n:n + 32]:
            raise _Damaged(path)
        try:
            version, stamp, stored_key, data = pickle.loads(raw[n + 32:])
        except Exception:  # intact but unreadable here (written by other library versions): a miss, rewritten
            return None
        if (version, stamp) != (self._version, self._stamp) or stored_key != key:
            return None
        return data

    def save(self, key, data) -> None:
        body = self._dumps((self._version, self._stamp, key, data))
        path = self.path(key)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=self._folder)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(self.MAGIC + hashlib.sha256(body).digest() + body)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def flush(self) -> None:
        for path in Path(self._folder).glob(f"{self._base}.*.nbc") if self._folder else ():
            path.unlink(missing_ok=True)


class _CheckedCache:
    """Mixed into numba's cache classes: the overloads live in :class:`_CacheFile`; a damaged file is reported once and
    recompiled; a failed write marks the cache root unwritable (one warning) and the kernel stays in memory."""

    _version = ""
    _dumps = None

    def __init__(self, py_func):
        super().__init__(py_func)
        self._cache_file = _CacheFile(self.cache_path, self._impl.filename_base,
                                      self._impl.locator.get_source_stamp(), self._version, type(self)._dumps)

    def load_overload(self, sig, target_context):
        try:
            return super().load_overload(sig, target_context)
        except _Damaged as damaged:
            _warn_once(f"damaged:{damaged}", f"adamgen: the cached kernel {damaged} is damaged (truncated or "
                       "corrupted); it is recompiled and rewritten")
        except Exception as error:  # an intact file that numba cannot rebuild: compile afresh, then overwrite it
            _warn_once(f"unusable:{self.cache_path}", f"adamgen: a cached kernel in {self.cache_path} could not be "
                       f"loaded ({type(error).__name__}: {error}); it is recompiled")
        return None

    def save_overload(self, sig, data):
        root = self._impl.locator.root
        if root is None or str(root) in _unwritable:
            return
        try:
            super().save_overload(sig, data)
        except OSError as error:
            _cannot_write(root, error)


@functools.cache
def _checked_cpu_cache():
    import numba
    from numba.core.caching import FunctionCache
    from numba.core.serialize import dumps

    return type("CheckedFunctionCache", (_CheckedCache, FunctionCache),
                {"_version": numba.__version__, "_dumps": staticmethod(dumps)})


@functools.cache
def _checked_cuda_cache():
    import numba_cuda
    from numba.cuda.dispatcher import CUDACache
    from numba.cuda.serialize import dumps

    return type("CheckedCUDACache", (_CheckedCache, CUDACache),
                {"_version": numba_cuda.__version__, "_dumps": staticmethod(dumps)})


def attach(module: types.ModuleType) -> None:
    """Give each cached kernel of a generated module adamgen's checked cache (no disk cache when its root is None)."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher

    cuda = sys.modules.get("numba.cuda.dispatcher")
    for value in list(vars(module).values()):
        cache = getattr(value, "_cache", None)
        locator = getattr(getattr(cache, "_impl", None), "locator", None)
        if not isinstance(locator, _Locator) or isinstance(cache, _CheckedCache):
            continue
        if isinstance(value, Dispatcher):
            value._cache = NullCache() if locator.root is None else _checked_cpu_cache()(value.py_func)
        elif cuda is not None and isinstance(value, cuda.CUDADispatcher):
            from numba.cuda.core.caching import NullCache as CUDANullCache

            value._cache = CUDANullCache() if locator.root is None else _checked_cuda_cache()(value.py_func)


# -- imports of the shipped modules ------------------------------------------------------------------------------------

class _GeneratedLoader(importlib.machinery.SourceFileLoader):
    """Loads ``adamgen.generated.<target>.<name>``: registers the locator before, attaches checked caches after."""

    def exec_module(self, module):
        _register_locator(module.__name__.split(".")[2])
        super().exec_module(module)
        attach(module)


class _GeneratedFinder:
    """A meta path finder for the shipped kernel modules, so that every import of one, ``adamgen.load`` or not, caches
    its kernels in the cache folder and never beside the module."""

    @staticmethod
    def find_spec(fullname, path=None, target=None):
        parts = fullname.split(".")
        if len(parts) != 4 or parts[:2] != ["adamgen", "generated"] or path is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or type(spec.loader) is not importlib.machinery.SourceFileLoader:
            return spec
        return importlib.util.spec_from_file_location(fullname, spec.origin,
                                                      loader=_GeneratedLoader(fullname, spec.origin))


if not any(finder is _GeneratedFinder for finder in sys.meta_path):
    sys.meta_path.insert(0, _GeneratedFinder)
