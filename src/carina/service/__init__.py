"""The carina service: Magnum's v1 API and Carina's control panel over carina.api.

`carina serve` runs it. It has no second way to run playbooks: every action is a call of
carina.api.Client, as the command line makes.
"""
