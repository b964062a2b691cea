"""`python -m services.common.healthcheck HOST:PORT [SERVICE]`: exit 0 when the service reports SERVING
(used by the compose healthchecks and usable by any probe)."""
import sys

from unitocom.client import health

if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
    status = health(target, sys.argv[2] if len(sys.argv) > 2 else "", timeout_s=2.0)
    print(status)
    sys.exit(0 if status == "SERVING" else 1)
