"""The multi-process half: a master that accepts and hands connections to worker processes.

``fdpass`` moves sockets (mechanism), ``wire`` frames the messages, ``dispatch`` decides who
gets what (pure policy), ``worker`` serves what it is given, ``master`` supervises.
"""
