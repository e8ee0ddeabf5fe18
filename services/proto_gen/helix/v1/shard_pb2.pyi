from services.proto_gen.helix.v1 import coordinator_pb2 as _coordinator_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ShardState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SHARD_STATE_UNSPECIFIED: _ClassVar[ShardState]
    SHARD_STATE_EMPTY: _ClassVar[ShardState]
    SHARD_STATE_LOADING: _ClassVar[ShardState]
    SHARD_STATE_READY: _ClassVar[ShardState]
    SHARD_STATE_DRAINING: _ClassVar[ShardState]
    SHARD_STATE_FAILED: _ClassVar[ShardState]
SHARD_STATE_UNSPECIFIED: ShardState
SHARD_STATE_EMPTY: ShardState
SHARD_STATE_LOADING: ShardState
SHARD_STATE_READY: ShardState
SHARD_STATE_DRAINING: ShardState
SHARD_STATE_FAILED: ShardState

class LoadRequest(_message.Message):
    __slots__ = ("checkpoint_path", "model_name", "plan_spec", "dtype", "device", "kv_page_size_tokens", "kv_pages", "kv_memory_fraction", "max_batch_size", "max_waiting_requests", "prefill_chunk_tokens", "dist_init_method")
    CHECKPOINT_PATH_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    PLAN_SPEC_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    KV_PAGE_SIZE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    KV_PAGES_FIELD_NUMBER: _ClassVar[int]
    KV_MEMORY_FRACTION_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_WAITING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_CHUNK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DIST_INIT_METHOD_FIELD_NUMBER: _ClassVar[int]
    checkpoint_path: str
    model_name: str
    plan_spec: str
    dtype: str
    device: str
    kv_page_size_tokens: int
    kv_pages: int
    kv_memory_fraction: float
    max_batch_size: int
    max_waiting_requests: int
    prefill_chunk_tokens: int
    dist_init_method: str
    def __init__(self, checkpoint_path: _Optional[str] = ..., model_name: _Optional[str] = ..., plan_spec: _Optional[str] = ..., dtype: _Optional[str] = ..., device: _Optional[str] = ..., kv_page_size_tokens: _Optional[int] = ..., kv_pages: _Optional[int] = ..., kv_memory_fraction: _Optional[float] = ..., max_batch_size: _Optional[int] = ..., max_waiting_requests: _Optional[int] = ..., prefill_chunk_tokens: _Optional[int] = ..., dist_init_method: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class LoadedModel(_message.Message):
    __slots__ = ("model_type", "model_name", "checkpoint_path", "vocab_size", "max_position_embeddings", "has_tokenizer", "eos_token_ids", "bos_token_id", "dtype", "plan", "max_batch_size", "prefill_chunk_tokens", "max_context_tokens")
    MODEL_TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_PATH_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_POSITION_EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    HAS_TOKENIZER_FIELD_NUMBER: _ClassVar[int]
    EOS_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    BOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    PLAN_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    PREFILL_CHUNK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONTEXT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model_type: str
    model_name: str
    checkpoint_path: str
    vocab_size: int
    max_position_embeddings: int
    has_tokenizer: bool
    eos_token_ids: _containers.RepeatedScalarFieldContainer[int]
    bos_token_id: int
    dtype: str
    plan: _coordinator_pb2.ParallelPlan
    max_batch_size: int
    prefill_chunk_tokens: int
    max_context_tokens: int
    def __init__(self, model_type: _Optional[str] = ..., model_name: _Optional[str] = ..., checkpoint_path: _Optional[str] = ..., vocab_size: _Optional[int] = ..., max_position_embeddings: _Optional[int] = ..., has_tokenizer: _Optional[bool] = ..., eos_token_ids: _Optional[_Iterable[int]] = ..., bos_token_id: _Optional[int] = ..., dtype: _Optional[str] = ..., plan: _Optional[_Union[_coordinator_pb2.ParallelPlan, _Mapping]] = ..., max_batch_size: _Optional[int] = ..., prefill_chunk_tokens: _Optional[int] = ..., max_context_tokens: _Optional[int] = ...) -> None: ...

class KvCacheUsage(_message.Message):
    __slots__ = ("page_size_tokens", "pages_total", "pages_used", "capacity_tokens")
    PAGE_SIZE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PAGES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    PAGES_USED_FIELD_NUMBER: _ClassVar[int]
    CAPACITY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    page_size_tokens: int
    pages_total: int
    pages_used: int
    capacity_tokens: int
    def __init__(self, page_size_tokens: _Optional[int] = ..., pages_total: _Optional[int] = ..., pages_used: _Optional[int] = ..., capacity_tokens: _Optional[int] = ...) -> None: ...

class ShardStatus(_message.Message):
    __slots__ = ("rank", "world_size", "state", "message", "device", "model", "kvp_rank", "tpa_rank", "kv", "running_requests", "waiting_requests", "decode_steps", "profile_every_n_steps", "head_slice_rank")
    RANK_FIELD_NUMBER: _ClassVar[int]
    WORLD_SIZE_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    KVP_RANK_FIELD_NUMBER: _ClassVar[int]
    TPA_RANK_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    RUNNING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    WAITING_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    DECODE_STEPS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_EVERY_N_STEPS_FIELD_NUMBER: _ClassVar[int]
    HEAD_SLICE_RANK_FIELD_NUMBER: _ClassVar[int]
    rank: int
    world_size: int
    state: ShardState
    message: str
    device: str
    model: LoadedModel
    kvp_rank: int
    tpa_rank: int
    kv: KvCacheUsage
    running_requests: int
    waiting_requests: int
    decode_steps: int
    profile_every_n_steps: int
    head_slice_rank: int
    def __init__(self, rank: _Optional[int] = ..., world_size: _Optional[int] = ..., state: _Optional[_Union[ShardState, str]] = ..., message: _Optional[str] = ..., device: _Optional[str] = ..., model: _Optional[_Union[LoadedModel, _Mapping]] = ..., kvp_rank: _Optional[int] = ..., tpa_rank: _Optional[int] = ..., kv: _Optional[_Union[KvCacheUsage, _Mapping]] = ..., running_requests: _Optional[int] = ..., waiting_requests: _Optional[int] = ..., decode_steps: _Optional[int] = ..., profile_every_n_steps: _Optional[int] = ..., head_slice_rank: _Optional[int] = ...) -> None: ...

class SetProfilingRequest(_message.Message):
    __slots__ = ("every_n_steps",)
    EVERY_N_STEPS_FIELD_NUMBER: _ClassVar[int]
    every_n_steps: int
    def __init__(self, every_n_steps: _Optional[int] = ...) -> None: ...

class SetProfilingResponse(_message.Message):
    __slots__ = ("previous_every_n_steps",)
    PREVIOUS_EVERY_N_STEPS_FIELD_NUMBER: _ClassVar[int]
    previous_every_n_steps: int
    def __init__(self, previous_every_n_steps: _Optional[int] = ...) -> None: ...

class ShutdownRequest(_message.Message):
    __slots__ = ("drain", "grace_period_s")
    DRAIN_FIELD_NUMBER: _ClassVar[int]
    GRACE_PERIOD_S_FIELD_NUMBER: _ClassVar[int]
    drain: bool
    grace_period_s: int
    def __init__(self, drain: _Optional[bool] = ..., grace_period_s: _Optional[int] = ...) -> None: ...

class ShutdownResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ShardCommand(_message.Message):
    __slots__ = ("admit", "cancel")
    ADMIT_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    admit: Admit
    cancel: CancelAdmitted
    def __init__(self, admit: _Optional[_Union[Admit, _Mapping]] = ..., cancel: _Optional[_Union[CancelAdmitted, _Mapping]] = ...) -> None: ...

class Admit(_message.Message):
    __slots__ = ("request_id", "prompt_token_ids", "sampling", "max_new_tokens", "stop_token_ids", "return_logprobs", "deadline_unix_ns")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STOP_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    RETURN_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_UNIX_NS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    prompt_token_ids: _containers.RepeatedScalarFieldContainer[int]
    sampling: _coordinator_pb2.SamplingParams
    max_new_tokens: int
    stop_token_ids: _containers.RepeatedScalarFieldContainer[int]
    return_logprobs: bool
    deadline_unix_ns: int
    def __init__(self, request_id: _Optional[str] = ..., prompt_token_ids: _Optional[_Iterable[int]] = ..., sampling: _Optional[_Union[_coordinator_pb2.SamplingParams, _Mapping]] = ..., max_new_tokens: _Optional[int] = ..., stop_token_ids: _Optional[_Iterable[int]] = ..., return_logprobs: _Optional[bool] = ..., deadline_unix_ns: _Optional[int] = ...) -> None: ...

class CancelAdmitted(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class ShardEvent(_message.Message):
    __slots__ = ("tokens", "finished", "failed")
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    FINISHED_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    tokens: TokenBatch
    finished: RequestFinished
    failed: RequestFailed
    def __init__(self, tokens: _Optional[_Union[TokenBatch, _Mapping]] = ..., finished: _Optional[_Union[RequestFinished, _Mapping]] = ..., failed: _Optional[_Union[RequestFailed, _Mapping]] = ...) -> None: ...

class TokenBatch(_message.Message):
    __slots__ = ("server_time_ns", "tokens")
    SERVER_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    server_time_ns: int
    tokens: _containers.RepeatedCompositeFieldContainer[GeneratedToken]
    def __init__(self, server_time_ns: _Optional[int] = ..., tokens: _Optional[_Iterable[_Union[GeneratedToken, _Mapping]]] = ...) -> None: ...

class GeneratedToken(_message.Message):
    __slots__ = ("request_id", "token_id", "logprob", "index")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    token_id: int
    logprob: float
    index: int
    def __init__(self, request_id: _Optional[str] = ..., token_id: _Optional[int] = ..., logprob: _Optional[float] = ..., index: _Optional[int] = ...) -> None: ...

class RequestFinished(_message.Message):
    __slots__ = ("request_id", "reason", "generated_tokens", "queue_time_ns", "prefill_time_ns")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    GENERATED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    QUEUE_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_TIME_NS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    reason: _coordinator_pb2.FinishReason
    generated_tokens: int
    queue_time_ns: int
    prefill_time_ns: int
    def __init__(self, request_id: _Optional[str] = ..., reason: _Optional[_Union[_coordinator_pb2.FinishReason, str]] = ..., generated_tokens: _Optional[int] = ..., queue_time_ns: _Optional[int] = ..., prefill_time_ns: _Optional[int] = ...) -> None: ...

class RequestFailed(_message.Message):
    __slots__ = ("request_id", "code", "message")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    code: int
    message: str
    def __init__(self, request_id: _Optional[str] = ..., code: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...
