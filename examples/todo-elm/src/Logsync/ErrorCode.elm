module Logsync.ErrorCode exposing (ErrorCode(..), all, decoder, fromString, toString)

{-| GENERATED from sync-core's `ErrorCode` (sync-core/src/error.rs) by
sync-core/tests/generated.rs: do not edit. After a code is added there, run
`LOGSYNC_BLESS=1 cargo test -p sync-core --test generated`.

Every stable error code Logsync uses, in Rust, on the wire, over HTTP and
in JavaScript, as an Elm custom type. Text this build does not know (a
newer peer's code) decodes to `Unknown`, as it does in sync-core.

@docs ErrorCode, all, decoder, fromString, toString

-}

import Json.Decode as D


{-| One error code.

  - `ProtocolVersion` (`PROTOCOL_VERSION`): The peer speaks another protocol version.
  - `MalformedFrame` (`MALFORMED_FRAME`): A frame or body could not be decoded.
  - `FrameTooLarge` (`FRAME_TOO_LARGE`): A frame or body is over the size limit.
  - `HelloRequired` (`HELLO_REQUIRED`): The first frame of a connection was not `Hello`.
  - `UnexpectedHello` (`UNEXPECTED_HELLO`): A second `Hello` on one connection.
  - `InvalidStream` (`INVALID_STREAM`): A stream name breaks the naming rule.
  - `InvalidSeq` (`INVALID_SEQ`): A seq is zero or otherwise unusable.
  - `InvalidClientId` (`INVALID_CLIENT_ID`): A client id is not 16 bytes / 32 hex digits.
  - `InvalidOffset` (`INVALID_OFFSET`): An offset is out of range.
  - `InvalidJson` (`INVALID_JSON`): JSON that does not parse or has the wrong shape.
  - `InvalidRequest` (`INVALID_REQUEST`): A request parameter is missing or wrong.
  - `SeqGap` (`SEQ_GAP`): The intent's seq is beyond the next one the server expects.
  - `PayloadTooLarge` (`PAYLOAD_TOO_LARGE`): A payload is over the size limit.
  - `Unauthorized` (`UNAUTHORIZED`): No valid credentials.
  - `Forbidden` (`FORBIDDEN`): Valid credentials, but not for this stream or client id.
  - `OriginForbidden` (`ORIGIN_FORBIDDEN`): The WebSocket's `Origin` is not allowed.
  - `RateLimited` (`RATE_LIMITED`): Too many intents per second.
  - `TooManySubscriptions` (`TOO_MANY_SUBSCRIPTIONS`): Too many subscriptions on one connection.
  - `TooManyConnections` (`TOO_MANY_CONNECTIONS`): Too many connections.
  - `SlowConsumer` (`SLOW_CONSUMER`): Too many bytes queued for a connection that does not read.
  - `IdleTimeout` (`IDLE_TIMEOUT`): The connection was idle or did not answer pings.
  - `ShuttingDown` (`SHUTTING_DOWN`): The server is shutting down.
  - `Storage` (`STORAGE`): The server's storage failed.
  - `Rejected` (`REJECTED`): The intent was refused by the application's validation.
  - `OffsetGap` (`OFFSET_GAP`): A batch of events skips an offset.
  - `OffsetRepeat` (`OFFSET_REPEAT`): A batch of events repeats an offset already applied.
  - `WrongStream` (`WRONG_STREAM`): An event belongs to another stream.
  - `Reducer` (`REDUCER`): The reducer threw or could not decode a payload.
  - `EpochChanged` (`EPOCH_CHANGED`): The server came back with another log epoch.
  - `NotFound` (`NOT_FOUND`): No such route or resource.
  - `Internal` (`INTERNAL`): A bug: an invariant did not hold.
  - `Unknown` (`UNKNOWN`): A code this build does not know (sent by a newer peer).
  - `QuotaExceeded` (`QUOTA_EXCEEDED`): Client storage is full (the browser refused a write for quota).
  - `StoreClosed` (`STORE_CLOSED`): The store was closed; the call cannot complete.
  - `ConnectFailed` (`CONNECT_FAILED`): A connection attempt failed: nothing answered, or something that is not a Logsync WebSocket endpoint did.
  - `SeqReused` (`SEQ_REUSED`): A push reused a seq that already holds another intent (its payload differs from the one the seq was decided with). The message names the offset of the intent that holds the seq; the pushed intent is refused and nothing is stored.
  - `Compacted` (`COMPACTED`): The events asked for were compacted away: the stream starts from its snapshot (`GET /v1/streams/{s}/snapshot`), and the message names the oldest event kept.
  - `Diverged` (`DIVERGED`): This client's fold of the log differs from the server's at the same offset (their state hashes differ): the reducer is not deterministic, or not the server's. The client takes the server's snapshot in place of its confirmed state and re-applies its pending intents on it; the message names the offset.
  - `SchemaTooOld` (`SCHEMA_TOO_OLD`): An intent was made under a schema version older than the oldest the server's reducer still upcasts (its `minSchemaVersion`): it is refused, for good. The app is older than the server supports and must be reloaded.
  - `SchemaTooNew` (`SCHEMA_TOO_NEW`): Something was made under a schema version newer than this side's reducer knows: a server refuses such an intent without deciding it (a newer node may take it), and a client stops applying such events, keeping its outbox, until the app is reloaded.
  - `Expired` (`EXPIRED`): A queued intent outlived the time-to-live of its action type: it was withdrawn instead of being sent late.
  - `Offline` (`OFFLINE`): An online-only action was dispatched while the store was offline: nothing was queued.

-}
type ErrorCode
    = ProtocolVersion
    | MalformedFrame
    | FrameTooLarge
    | HelloRequired
    | UnexpectedHello
    | InvalidStream
    | InvalidSeq
    | InvalidClientId
    | InvalidOffset
    | InvalidJson
    | InvalidRequest
    | SeqGap
    | PayloadTooLarge
    | Unauthorized
    | Forbidden
    | OriginForbidden
    | RateLimited
    | TooManySubscriptions
    | TooManyConnections
    | SlowConsumer
    | IdleTimeout
    | ShuttingDown
    | Storage
    | Rejected
    | OffsetGap
    | OffsetRepeat
    | WrongStream
    | Reducer
    | EpochChanged
    | NotFound
    | Internal
    | Unknown
    | QuotaExceeded
    | StoreClosed
    | ConnectFailed
    | SeqReused
    | Compacted
    | Diverged
    | SchemaTooOld
    | SchemaTooNew
    | Expired
    | Offline


{-| Every code, in sync-core's order.
-}
all : List ErrorCode
all =
    [ ProtocolVersion
    , MalformedFrame
    , FrameTooLarge
    , HelloRequired
    , UnexpectedHello
    , InvalidStream
    , InvalidSeq
    , InvalidClientId
    , InvalidOffset
    , InvalidJson
    , InvalidRequest
    , SeqGap
    , PayloadTooLarge
    , Unauthorized
    , Forbidden
    , OriginForbidden
    , RateLimited
    , TooManySubscriptions
    , TooManyConnections
    , SlowConsumer
    , IdleTimeout
    , ShuttingDown
    , Storage
    , Rejected
    , OffsetGap
    , OffsetRepeat
    , WrongStream
    , Reducer
    , EpochChanged
    , NotFound
    , Internal
    , Unknown
    , QuotaExceeded
    , StoreClosed
    , ConnectFailed
    , SeqReused
    , Compacted
    , Diverged
    , SchemaTooOld
    , SchemaTooNew
    , Expired
    , Offline
    ]


{-| The code's stable text, e.g. `"PAYLOAD_TOO_LARGE"`.
-}
toString : ErrorCode -> String
toString code =
    case code of
        ProtocolVersion ->
            "PROTOCOL_VERSION"

        MalformedFrame ->
            "MALFORMED_FRAME"

        FrameTooLarge ->
            "FRAME_TOO_LARGE"

        HelloRequired ->
            "HELLO_REQUIRED"

        UnexpectedHello ->
            "UNEXPECTED_HELLO"

        InvalidStream ->
            "INVALID_STREAM"

        InvalidSeq ->
            "INVALID_SEQ"

        InvalidClientId ->
            "INVALID_CLIENT_ID"

        InvalidOffset ->
            "INVALID_OFFSET"

        InvalidJson ->
            "INVALID_JSON"

        InvalidRequest ->
            "INVALID_REQUEST"

        SeqGap ->
            "SEQ_GAP"

        PayloadTooLarge ->
            "PAYLOAD_TOO_LARGE"

        Unauthorized ->
            "UNAUTHORIZED"

        Forbidden ->
            "FORBIDDEN"

        OriginForbidden ->
            "ORIGIN_FORBIDDEN"

        RateLimited ->
            "RATE_LIMITED"

        TooManySubscriptions ->
            "TOO_MANY_SUBSCRIPTIONS"

        TooManyConnections ->
            "TOO_MANY_CONNECTIONS"

        SlowConsumer ->
            "SLOW_CONSUMER"

        IdleTimeout ->
            "IDLE_TIMEOUT"

        ShuttingDown ->
            "SHUTTING_DOWN"

        Storage ->
            "STORAGE"

        Rejected ->
            "REJECTED"

        OffsetGap ->
            "OFFSET_GAP"

        OffsetRepeat ->
            "OFFSET_REPEAT"

        WrongStream ->
            "WRONG_STREAM"

        Reducer ->
            "REDUCER"

        EpochChanged ->
            "EPOCH_CHANGED"

        NotFound ->
            "NOT_FOUND"

        Internal ->
            "INTERNAL"

        Unknown ->
            "UNKNOWN"

        QuotaExceeded ->
            "QUOTA_EXCEEDED"

        StoreClosed ->
            "STORE_CLOSED"

        ConnectFailed ->
            "CONNECT_FAILED"

        SeqReused ->
            "SEQ_REUSED"

        Compacted ->
            "COMPACTED"

        Diverged ->
            "DIVERGED"

        SchemaTooOld ->
            "SCHEMA_TOO_OLD"

        SchemaTooNew ->
            "SCHEMA_TOO_NEW"

        Expired ->
            "EXPIRED"

        Offline ->
            "OFFLINE"


{-| The code with this text, or `Nothing` for text this build does not know.
-}
fromString : String -> Maybe ErrorCode
fromString text =
    case text of
        "PROTOCOL_VERSION" ->
            Just ProtocolVersion

        "MALFORMED_FRAME" ->
            Just MalformedFrame

        "FRAME_TOO_LARGE" ->
            Just FrameTooLarge

        "HELLO_REQUIRED" ->
            Just HelloRequired

        "UNEXPECTED_HELLO" ->
            Just UnexpectedHello

        "INVALID_STREAM" ->
            Just InvalidStream

        "INVALID_SEQ" ->
            Just InvalidSeq

        "INVALID_CLIENT_ID" ->
            Just InvalidClientId

        "INVALID_OFFSET" ->
            Just InvalidOffset

        "INVALID_JSON" ->
            Just InvalidJson

        "INVALID_REQUEST" ->
            Just InvalidRequest

        "SEQ_GAP" ->
            Just SeqGap

        "PAYLOAD_TOO_LARGE" ->
            Just PayloadTooLarge

        "UNAUTHORIZED" ->
            Just Unauthorized

        "FORBIDDEN" ->
            Just Forbidden

        "ORIGIN_FORBIDDEN" ->
            Just OriginForbidden

        "RATE_LIMITED" ->
            Just RateLimited

        "TOO_MANY_SUBSCRIPTIONS" ->
            Just TooManySubscriptions

        "TOO_MANY_CONNECTIONS" ->
            Just TooManyConnections

        "SLOW_CONSUMER" ->
            Just SlowConsumer

        "IDLE_TIMEOUT" ->
            Just IdleTimeout

        "SHUTTING_DOWN" ->
            Just ShuttingDown

        "STORAGE" ->
            Just Storage

        "REJECTED" ->
            Just Rejected

        "OFFSET_GAP" ->
            Just OffsetGap

        "OFFSET_REPEAT" ->
            Just OffsetRepeat

        "WRONG_STREAM" ->
            Just WrongStream

        "REDUCER" ->
            Just Reducer

        "EPOCH_CHANGED" ->
            Just EpochChanged

        "NOT_FOUND" ->
            Just NotFound

        "INTERNAL" ->
            Just Internal

        "UNKNOWN" ->
            Just Unknown

        "QUOTA_EXCEEDED" ->
            Just QuotaExceeded

        "STORE_CLOSED" ->
            Just StoreClosed

        "CONNECT_FAILED" ->
            Just ConnectFailed

        "SEQ_REUSED" ->
            Just SeqReused

        "COMPACTED" ->
            Just Compacted

        "DIVERGED" ->
            Just Diverged

        "SCHEMA_TOO_OLD" ->
            Just SchemaTooOld

        "SCHEMA_TOO_NEW" ->
            Just SchemaTooNew

        "EXPIRED" ->
            Just Expired

        "OFFLINE" ->
            Just Offline

        _ ->
            Nothing


{-| Decodes a code's text; text this build does not know gives `Unknown`.
-}
decoder : D.Decoder ErrorCode
decoder =
    D.map (fromString >> Maybe.withDefault Unknown) D.string
