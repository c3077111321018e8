module Logsync.View exposing
    ( Ports, subscriptions, Event(..)
    , Status, initialStatus
    , statusDecoder
    )

{-| A view of a stream, followed live: the result a view the server's
reducer module exports (e.g. the TodoMVC module's `counts`) gives on the
stream's state, and the view store's status. The view store is made in
JavaScript by `createViewStore` and connected by `connectElmViewPorts`
from `logsync/elm`. Copy this file with `Logsync.elm` and
`Logsync/ErrorCode.elm`.

Each view has its own pair of incoming ports, declared by the app (its
result has its own type, so it gets its own decoder), and named in
JavaScript:

    port countsChanged :
        (D.Value -> msg)
        -> Sub msg -- resultPort: 'countsChanged'

    port countsStatus :
        (D.Value -> msg)
        -> Sub msg -- statusPort: 'countsStatus'

    subscriptions _ =
        Logsync.View.subscriptions
            { result = countsChanged, status = countsStatus }
            countsDecoder
            FromCounts

A view store is read-only: there is no outgoing port. Changes are made
through a sync store (`Logsync.send`) or by other clients; the view's
result follows once the server has them.


# Ports and events

@docs Ports, subscriptions, Event


# Status

@docs Status, initialStatus


# Decoders (for apps that wire the ports themselves)

@docs statusDecoder

-}

import Json.Decode as D
import Logsync


{-| The two incoming ports of one view, as the app declares them.
-}
type alias Ports msg =
    { result : (D.Value -> msg) -> Sub msg
    , status : (D.Value -> msg) -> Sub msg
    }


{-| What a view store tells the app.

  - `ResultChanged`: the view's result, decoded with the app's decoder;
    at connect time when one is known (from the IndexedDB cache or the
    server), then after each change. Nothing comes while no result is
    known: offline, on a first start, until the server answers.
  - `StatusChanged`: online or not, the offset the result reflects,
    whether the cache has been read, the last error, whether the server
    wants a new token. It comes before the result it belongs to.
  - `DecodeFailed`: a value did not decode; the string says which port
    (`"result"`: the app's decoder does not fit the view's result;
    `"status"`).

-}
type Event result
    = ResultChanged result
    | StatusChanged Status
    | DecodeFailed String D.Error


{-| Subscribes to one view's result and status ports.
-}
subscriptions : Ports msg -> D.Decoder result -> (Event result -> msg) -> Sub msg
subscriptions ports resultDecoder toMsg =
    Sub.batch
        [ ports.result (decodeWith "result" resultDecoder ResultChanged >> toMsg)
        , ports.status (decodeWith "status" statusDecoder StatusChanged >> toMsg)
        ]


decodeWith : String -> D.Decoder a -> (a -> Event result) -> D.Value -> Event result
decodeWith which decoder toEvent value =
    case D.decodeValue decoder value of
        Ok decoded ->
            toEvent decoded

        Err err ->
            DecodeFailed which err


{-| A view store's status.

  - `online`: its feed from the server is open.
  - `offset`: the stream offset the result was evaluated at (0 before a
    result is known).
  - `hydrated`: the cached result, if there is one, has been read (and
    sent). Hydrated, offline and no `ResultChanged` yet: this device has
    never seen the view's result.
  - `lastError`: the current problem (`NotFound` for a view the server's
    module does not export, `Unauthorized`, `Forbidden`, `ConnectFailed`,
    or an error the server sent), cleared when a feed opens.
  - `needsToken`: the server refused the token; the store waits until
    JavaScript calls `viewStore.setToken(token)`.

-}
type alias Status =
    { online : Bool
    , offset : Int
    , hydrated : Bool
    , lastError : Maybe Logsync.Error
    , needsToken : Bool
    }


{-| The status before the store has said anything.
-}
initialStatus : Status
initialStatus =
    { online = False
    , offset = 0
    , hydrated = False
    , lastError = Nothing
    , needsToken = False
    }


{-| `{"online", "offset", "hydrated", "lastError", "needsToken"}`
-}
statusDecoder : D.Decoder Status
statusDecoder =
    D.map5 Status
        (D.field "online" D.bool)
        (D.field "offset" D.int)
        (D.field "hydrated" D.bool)
        (D.field "lastError" (D.nullable Logsync.errorDecoder))
        (D.field "needsToken" D.bool)
