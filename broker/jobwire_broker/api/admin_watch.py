"""AdminService RPCs of one area (see api/admin.py, which combines the parts)."""

from ..domain.admin import AdminContext
from ..domain.limits import Defaults, Limits
from .requests import Parser


class WatchRpcs:
    ctx: AdminContext
    limits: Limits
    defaults: Defaults

    def _parser(self) -> Parser:
        return Parser(self.limits, self.defaults)
