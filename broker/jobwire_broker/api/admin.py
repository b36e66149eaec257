"""AdminService: one servicer made of one part per area, each in its own module."""

from jobwire.v1 import admin_service_pb2_grpc as rpc

from ..domain.admin import AdminContext
from ..domain.limits import Defaults, Limits
from .admin_jobs import JobRpcs
from .admin_queues import QueueRpcs
from .admin_watch import WatchRpcs
from .requests import Parser


class AdminServicer(QueueRpcs, JobRpcs, WatchRpcs, rpc.AdminServiceServicer):
    def __init__(self, ctx: AdminContext, limits: Limits, defaults: Defaults) -> None:
        self.ctx = ctx
        self.limits = limits
        self.defaults = defaults

    def _parser(self) -> Parser:
        return Parser(self.limits, self.defaults)
