"""The agent's tests run on the emulator's fixtures (an emulator, a project, a key pair)."""

from testcloud.emulator.test_emulator import admin, dockerc, emulator, keypair, project  # noqa: F401
