"""Flask extensions, created unbound and initialised in create_app()."""

from typing import TYPE_CHECKING

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf import CSRFProtect

from donorhub.database import Base

db = SQLAlchemy(model_class=Base)

# Models subclass `Model`. At runtime it is db.Model, which Flask-SQLAlchemy builds from Base's
# body (the same registry, metadata and type map); mypy cannot take an attribute as a base class,
# so it is shown Base, which declares the same mapped-class interface.
if TYPE_CHECKING:
    Model = Base
else:
    Model = db.Model

migrate = Migrate()
login_manager = LoginManager()
csrf = CSRFProtect()
# No default limits: each sensitive route names its own, so ordinary pages are never throttled.
limiter = Limiter(key_func=get_remote_address, default_limits=[])
