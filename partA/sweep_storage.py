"""Where a local sweep's Optuna study lives: the journal file in its folder (one machine, or machines sharing the
folder), or a PostgreSQL database (`--storage postgresql://…`: agents on several machines join one sweep).

Proposals and liveness stay the engine's own on both (docs/design.md, "Local sweeps"). Passwords: through PGPASSWORD
or ~/.pgpass, not the URL — the URL is kept in the sweep folder (storage.json) for the report and a rerun.
"""
import hashlib
from contextlib import contextmanager

from common.errors import UserError, describe

SCHEMES = ("postgresql://", "postgresql+psycopg://", "postgres://")
_STORAGES = {}  # url -> RDBStorage: one engine (and its connection pool) per process


def storage_url(url):
    """The SQLAlchemy URL for a --storage value (psycopg 3 as the driver), or a one-line refusal."""
    if not url.startswith(SCHEMES):
        raise UserError(f"--storage takes a PostgreSQL URL such as postgresql://user@host/dbname, not {masked(url)!r}; "
                        f"leave it out to keep the sweep in its folder's journal")
    return "postgresql+psycopg://" + url.split("://", 1)[1]


def masked(url):
    """The URL without its password, for messages."""
    head, sep, tail = url.partition("://")
    if "@" not in tail:
        return url
    credentials, host = tail.rsplit("@", 1)
    return f"{head}{sep}{credentials.split(':', 1)[0]}{':***' if ':' in credentials else ''}@{host}"


def rdb_storage(url):
    """Optuna's RDB storage on `url` (created tables on first use), or one line saying why the server refused."""
    import optuna
    import sqlalchemy

    if url not in _STORAGES:
        try:
            _STORAGES[url] = optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except ImportError:  # SQLAlchemy's driver for the URL, psycopg, is not installed
            raise UserError("a PostgreSQL sweep storage needs psycopg: pip install -e '.[postgres]'") from None
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
            raise UserError(f"cannot use the sweep storage {masked(url)} ({describe(err)}); check that the server "
                            f"runs and the URL, user and database are right") from None
    return _STORAGES[url]


def lock_key(name):
    """A signed 64-bit key for pg_advisory_lock, the same for every agent of sweep `name`."""
    return int.from_bytes(hashlib.sha256(f"inat-lab sweep {name}".encode()).digest()[:8], "big", signed=True)


@contextmanager
def database_lock(url, name):
    """Hold PostgreSQL's session advisory lock of sweep `name` for the block (a killed agent's goes with it)."""
    import sqlalchemy

    engine = rdb_storage(url).engine
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": lock_key(name)})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(name)})
            connection.commit()


@contextmanager
def database_errors(url):
    """A database that went away mid-sweep, or refuses, as one line (Optuna raises SQLAlchemy's errors)."""
    import optuna
    import sqlalchemy

    try:
        yield
    except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError) as err:
        raise UserError(f"the sweep storage {masked(url)} failed ({describe(err)}); check the server, then run the "
                        f"same command again: the sweep continues") from None
