port module Logsync exposing
    ( send, encodeAction
    , subscriptions, Event(..)
    , Status, Error, Rejection, initialStatus, isSynced
    , statusDecoder, errorDecoder, rejectionDecoder
    )

{-| Typed ports for a Logsync store, connected in JavaScript by
`connectElmPorts` from `logsync/elm`. Copy this file and
`Logsync/ErrorCode.elm` into your app's source directory (Elm packages
cannot declare ports, so this is a module to copy, not a package).

The ports, and the `connectElmPorts` options that name them:

    port dispatch :
        E.Value
        -> Cmd msg -- dispatchPort: 'dispatch'

    port stateChanged :
        (D.Value -> msg)
        -> Sub msg -- statePort: 'stateChanged'

    port syncStatus :
        (D.Value -> msg)
        -> Sub msg -- statusPort: 'syncStatus'

    port rejected :
        (D.Value -> msg)
        -> Sub msg -- rejectedPort: 'rejected'

    port errors :
        (D.Value -> msg)
        -> Sub msg -- errorPort: 'errors'

`subscriptions` uses all four incoming ports and `send` the outgoing one,
so none of them is dropped by the compiler as long as the program uses
both.


# Actions out

@docs send, encodeAction


# Everything in

@docs subscriptions, Event


# Status, rejections, errors

@docs Status, Error, Rejection, initialStatus, isSynced


# Decoders (for apps that wire the ports themselves)

@docs statusDecoder, errorDecoder, rejectionDecoder

-}

import Json.Decode as D
import Json.Encode as E
import Logsync.ErrorCode as ErrorCode exposing (ErrorCode)



-- PORTS


port dispatch : E.Value -> Cmd msg


port stateChanged : (D.Value -> msg) -> Sub msg


port syncStatus : (D.Value -> msg) -> Sub msg


port rejected : (D.Value -> msg) -> Sub msg


port errors : (D.Value -> msg) -> Sub msg



-- ACTIONS


{-| Dispatches an action to the store: it is applied at once (also
offline) and sent to the server.

    Logsync.send "todo/added" [ ( "id", E.string id ), ( "text", E.string text ) ]

-}
send : String -> List ( String, E.Value ) -> Cmd msg
send actionType fields =
    dispatch (encodeAction actionType fields)


{-| An action as the store expects it: a JSON object whose `"type"` is
`actionType`, with `fields` beside it. A `"type"` among the fields is
left out, so the type is always the one given.
-}
encodeAction : String -> List ( String, E.Value ) -> E.Value
encodeAction actionType fields =
    E.object (( "type", E.string actionType ) :: List.filter (\( key, _ ) -> key /= "type") fields)



-- EVENTS


{-| What the store tells the app.

  - `StateChanged`: the whole state, decoded with the app's decoder; at
    connect time and after every change (the app's own actions, other
    devices' events, rollbacks of refused actions).
  - `StatusChanged`: online or not, pending count, offsets, last error,
    whether the server wants a new token.
  - `ActionRejected`: the server refused one of this app's actions; it is
    already taken out of the state.
  - `ErrorReported`: something failed (storage, a dispatch the store
    refused, …).
  - `DecodeFailed`: a value on the port named by the string did not
    decode (for the state port, the app's decoder does not fit the
    reducer's state).

-}
type Event state
    = StateChanged state
    | StatusChanged Status
    | ActionRejected Rejection
    | ErrorReported Error
    | DecodeFailed String D.Error


{-| Subscribes to the four incoming ports.

    subscriptions _ =
        Logsync.subscriptions stateDecoder FromLogsync

-}
subscriptions : D.Decoder state -> (Event state -> msg) -> Sub msg
subscriptions stateDecoder toMsg =
    Sub.batch
        [ stateChanged (decodeWith "stateChanged" stateDecoder StateChanged >> toMsg)
        , syncStatus (decodeWith "syncStatus" statusDecoder StatusChanged >> toMsg)
        , rejected (decodeWith "rejected" rejectionDecoder ActionRejected >> toMsg)
        , errors (decodeWith "errors" errorDecoder ErrorReported >> toMsg)
        ]


decodeWith : String -> D.Decoder a -> (a -> Event state) -> D.Value -> Event state
decodeWith portName decoder toEvent value =
    case D.decodeValue decoder value of
        Ok decoded ->
            toEvent decoded

        Err err ->
            DecodeFailed portName err



-- STATUS, REJECTIONS, ERRORS


{-| The store's sync status.

  - `online`: this tab's stream is live: connected and subscribed, here or
    through the tab that holds the connection its browser's tabs share.
  - `offset`: the last server event applied; `head` the last one the server
    has.
  - `pending`: this device's actions the server has not confirmed yet
    (they are in IndexedDB and are sent when online).
  - `lastError`: why the last connection failed, if it did.
  - `clientId`: this installation's id (32 hex digits).
  - `needsToken`: the server refused the token; the store waits until
    JavaScript calls `store.setToken(token)`.
  - `outdated`: this app is older than the data (`SchemaTooNew`: it
    stopped syncing, its actions are kept) or the server refused an action
    as too old (`SchemaTooOld`); ask the user to reload the page.
  - `leader`: this tab holds the connection its browser's tabs share
    (`False` in a tab that syncs through another one).

-}
type alias Status =
    { online : Bool
    , offset : Int
    , head : Int
    , pending : Int
    , lastError : Maybe Error
    , clientId : Maybe String
    , needsToken : Bool
    , outdated : Bool
    , leader : Bool
    }


{-| An error with its stable code.
-}
type alias Error =
    { code : ErrorCode
    , message : String
    }


{-| An action of this app that the server refused (e.g. `PayloadTooLarge`,
`Rejected`, `Forbidden`), with the action as it was dispatched.
-}
type alias Rejection =
    { action : D.Value
    , code : ErrorCode
    , message : String
    }


{-| The status before the store has said anything: offline, nothing
pending.
-}
initialStatus : Status
initialStatus =
    { online = False
    , offset = 0
    , head = 0
    , pending = 0
    , lastError = Nothing
    , clientId = Nothing
    , needsToken = False
    , outdated = False
    , leader = False
    }


{-| Online and every action of this device confirmed by the server.
-}
isSynced : Status -> Bool
isSynced status =
    status.online && status.pending == 0



-- DECODERS


{-| `{"online", "offset", "head", "pending", "lastError", "clientId", "needsToken", "outdated", "leader"}`
(`outdated` or `leader` missing: `False`)
-}
statusDecoder : D.Decoder Status
statusDecoder =
    D.map2 (<|)
        (D.map8 Status
            (D.field "online" D.bool)
            (D.field "offset" D.int)
            (D.field "head" D.int)
            (D.field "pending" D.int)
            (D.field "lastError" (D.nullable errorDecoder))
            (D.field "clientId" (D.nullable D.string))
            (D.field "needsToken" D.bool)
            (D.oneOf [ D.field "outdated" D.bool, D.succeed False ])
        )
        (D.oneOf [ D.field "leader" D.bool, D.succeed False ])


{-| `{"code", "message"}`; a code this build does not know decodes to
`Unknown`.
-}
errorDecoder : D.Decoder Error
errorDecoder =
    D.map2 Error
        (D.field "code" ErrorCode.decoder)
        (D.field "message" D.string)


{-| `{"action", "code", "message"}`
-}
rejectionDecoder : D.Decoder Rejection
rejectionDecoder =
    D.map3 Rejection
        (D.field "action" D.value)
        (D.field "code" ErrorCode.decoder)
        (D.field "message" D.string)
