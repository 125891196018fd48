"""GitHub's runner scale sets: the Actions service client (`client`), message sessions
(`session`), the queue's messages (`messages`, pure) and errors (`errors`).

A Python rendering of the protocol of github.com/actions/scaleset; see each module's
docstring for the endpoints it speaks.
"""
