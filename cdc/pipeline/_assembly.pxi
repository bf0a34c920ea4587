# The changes of an ordinary transaction held in memory, compiled (included by _core.pyx):
# ``replay`` mirrors ``ChangeAssembler._py_replay_in_memory`` (cdc.pipeline.changes), its
# reference. A RowChange is built slot by slot as its ``__init__`` would (it has no
# ``__post_init__``), a list instead of a generator: the messages are in memory already, so
# the changes made from them are bounded the same way.

cdef _Slots _RowChange = None
cdef _Slots _TransactionInfo = None
cdef _Slots _TransactionEnd = None
cdef _Slots _OpenTransaction = None
cdef object _Origin = None
cdef object _changes_module = None
cdef object _Relation = None
cdef object _Truncate = None
cdef object _Message = None


cdef object _make8(
    _Slots slots, object a, object b, object c, object d, object e, object f, object g,
    object h
):
    obj = _make5(slots, a, b, c, d, e)
    _store(obj, slots.offsets[5], f)
    _store(obj, slots.offsets[6], g)
    return _store(obj, slots.offsets[7], h)


cdef object _row_change(object assembler, dict relations, object txn, object message, object seq):
    """``ChangeAssembler._row_change``: one Insert, Update or Delete as a RowChange. Its fields
    are read from the message's slots (Insert: relation_id, new; Update: relation_id, new, old,
    old_kind; Delete: relation_id, old, old_kind); the relation from the assembler's cache,
    or by ``_relation`` (which names the error) when it is not there."""
    cdef object kind = type(message)
    cdef _Slots slots = _Insert if kind is _Insert.cls else (_Update if kind is _Update.cls else _Delete)
    relation_id = _field(message, slots, 0)
    relation = relations.get(relation_id)
    if relation is None:
        relation = assembler._relation(relation_id, kind.__name__)
    if slots is _Insert:
        new = _field(message, slots, 1)
        if _has_unchanged(new):
            new, unavailable = _changes_module.resolve_unchanged_toast(relation, new, None, False)
            return _make8(_RowChange, txn, seq, relation, "insert", None, new, None, unavailable)
        return _make8(_RowChange, txn, seq, relation, "insert", None, new, None, ())
    if slots is _Update:
        new, old, old_kind = _field(message, slots, 1), _field(message, slots, 2), _field(message, slots, 3)
        if _has_unchanged(new):
            new, unavailable = _changes_module.resolve_unchanged_toast(
                relation, new, old, old_kind == "O"
            )
            return _make8(_RowChange, txn, seq, relation, "update", old, new, old_kind, unavailable)
        return _make8(_RowChange, txn, seq, relation, "update", old, new, old_kind, ())
    old, old_kind = _field(message, slots, 1), _field(message, slots, 2)
    return _make8(_RowChange, txn, seq, relation, "delete", old, None, old_kind, ())


cdef _load_assembly():
    global _RowChange, _TransactionInfo, _TransactionEnd, _changes_module
    global _Relation, _Truncate, _Message, _Origin, _OpenTransaction
    if _RowChange is not None:
        return
    from dataclasses import fields

    from cdc.pipeline import changes as module
    from cdc.pipeline import pgoutput

    def slots(cls):
        return _Slots(cls, tuple(f.name for f in fields(cls)))

    _TransactionInfo, _TransactionEnd = slots(module.TransactionInfo), slots(module.TransactionEnd)
    _changes_module = module
    _Relation, _Truncate, _Message = pgoutput.Relation, pgoutput.Truncate, pgoutput.Message
    _Origin = pgoutput.Origin
    _OpenTransaction = slots(module._OpenTransaction)
    _RowChange = slots(module.RowChange)


def transaction_info(object xid, object commit_lsn, object commit_time, list messages):
    """``cdc.pipeline.changes._transaction_info`` over a transaction held in memory: its
    origin and its logical messages, in order."""
    cdef list logical = []
    _unchanged()
    _load_assembly()
    origin = None
    for message in messages:
        kind = type(message)
        if kind is _Message:
            logical.append(message)
        elif kind is _Origin:
            origin = message.name
    return _make5(_TransactionInfo, xid, commit_lsn, commit_time, origin, tuple(logical))


def replay(object assembler, object txn, list messages, object end_lsn):
    """The changes of ``messages`` (one committed transaction, in order) and its
    TransactionEnd, as a list; the assembler's relation cache and change counter move as its
    ``_py_replay_in_memory`` moves them."""
    cdef list changes = []
    cdef Py_ssize_t seq = 0
    _unchanged()
    _load_assembly()
    insert, update, delete = _Insert.cls, _Update.cls, _Delete.cls
    relations = assembler.relations  # the same dict throughout: _describe sets its items
    assembler._seq = 0
    try:
        for message in messages:
            kind = type(message)
            if kind is insert or kind is update or kind is delete:
                changes.append(_row_change(assembler, relations, txn, message, seq))
                seq += 1
            elif kind is _Relation:
                assembler._describe(message)
            elif kind is _Truncate:
                for relation_id in message.relation_ids:
                    changes.append(
                        _changes_module.TableTruncate(
                            txn,
                            seq,
                            assembler._relation(relation_id, "Truncate"),
                            message.cascade,
                            message.restart_identity,
                        )
                    )
                    seq += 1
            elif kind is _Message:
                changes.append(
                    _changes_module.TransactionMessage(
                        txn, seq, message.prefix, message.content, message.lsn
                    )
                )
                seq += 1
    finally:
        assembler._seq = seq
    changes.append(_make3(_TransactionEnd, txn, end_lsn, seq))
    return changes


def feed_quiet(object assembler, object message, object payload):
    """``ChangeAssembler._py_feed_quiet`` (bound as the assembler's ``feed_quiet``): an Insert,
    Update or Delete of an open ordinary transaction joins it; a Begin with nothing open,
    outside a stream block, past ``skip_through_lsn`` opens it (an ``_OpenTransaction`` made
    slot by slot, as its ``__init__`` would). False, nothing done, for any other message. Past
    ``IN_MEMORY_MESSAGES`` the transaction's own ``add`` spills it, as in the reference."""
    cdef list messages
    _unchanged()
    _load_assembly()
    if assembler._stream_xid is not None:
        return False
    open_txn = assembler._open
    kind = type(message)
    if open_txn is None:
        if kind is not _Begin.cls or assembler._skipping:
            return False
        final_lsn = _field(message, _Begin, 0)
        if final_lsn <= assembler.skip_through_lsn:
            return False
        assembler._open = _make5(
            _OpenTransaction, _field(message, _Begin, 2), final_lsn, _field(message, _Begin, 1),
            [], None,
        )
        return True
    if kind is not _Insert.cls and kind is not _Update.cls and kind is not _Delete.cls:
        return False
    messages = open_txn.messages
    if len(messages) < _changes_module.IN_MEMORY_MESSAGES or not payload:
        messages.append(message)
    else:
        open_txn.add(message, payload, assembler.spill.spill_dir)
    return True


def quiet_run(object decode, object feed_quiet, list frames, Py_ssize_t start):
    """``cdc.pipeline.loop._py_quiet_run``: from ``frames[start]`` on, each payload (bytes)
    decoded by ``decode`` and given to ``feed_quiet`` while it takes them, with no Python
    bytecode per payload. Returns ``(index, message)``: the first frame not taken, with its
    message when it is a payload (None: not a payload, or none left)."""
    cdef Py_ssize_t index
    cdef Py_ssize_t count = len(frames)
    for index in range(start, count):
        frame = frames[index]
        if type(frame) is not bytes:
            return index, None
        message = decode(frame)
        if not feed_quiet(message, frame):
            return index, message
    return max(start, count), None
