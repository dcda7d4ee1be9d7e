"""Re-export of the seeded synthetic tenant for tests: `from tests.synthetic import make_tenant`."""

from ml_service.demo.synthetic import NOW, make_tenant

__all__ = ["NOW", "make_tenant"]
