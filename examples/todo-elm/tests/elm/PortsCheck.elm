port module PortsCheck exposing (main)

{-| A headless program for tests/logsync-module.test.mjs and
tests/view-module.test.mjs: it uses Logsync.elm and Logsync/View.elm
exactly as an app does and reports every `Logsync.Event` and
`Logsync.View.Event` it gets, re-encoded, through the `report` port;
`command` makes it send actions or decode error codes. The view is the
TodoMVC module's `counts` (`{"all": Int, "completed": Int}`) on the ports
`countsChanged` and `countsStatus`.
-}

import Json.Decode as D
import Json.Encode as E
import Logsync exposing (Event(..))
import Logsync.ErrorCode as ErrorCode
import Logsync.View


port report : E.Value -> Cmd msg


port command : (D.Value -> msg) -> Sub msg


port countsChanged : (D.Value -> msg) -> Sub msg


port countsStatus : (D.Value -> msg) -> Sub msg


type alias Counts =
    { all : Int
    , completed : Int
    }


type Msg
    = FromLogsync (Logsync.Event (List String))
    | FromCounts (Logsync.View.Event Counts)
    | Command D.Value


main : Program () () Msg
main =
    Platform.worker
        { init = \_ -> ( (), Cmd.none )
        , update = update
        , subscriptions =
            \_ ->
                Sub.batch
                    [ Logsync.subscriptions (D.field "items" (D.list D.string)) FromLogsync
                    , Logsync.View.subscriptions
                        { result = countsChanged, status = countsStatus }
                        (D.map2 Counts (D.field "all" D.int) (D.field "completed" D.int))
                        FromCounts
                    , command Command
                    ]
        }


update : Msg -> () -> ( (), Cmd Msg )
update msg model =
    case msg of
        FromLogsync event ->
            ( model, report (encodeEvent event) )

        FromCounts event ->
            ( model, report (encodeViewEvent event) )

        Command value ->
            ( model, run value )


run : D.Value -> Cmd Msg
run value =
    case D.decodeValue (D.field "run" D.string) value of
        Ok "send" ->
            case D.decodeValue (D.map2 Tuple.pair (D.field "type" D.string) (D.field "fields" (D.keyValuePairs D.value))) value of
                Ok ( actionType, fields ) ->
                    Logsync.send actionType fields

                Err err ->
                    report (E.object [ ( "badCommand", E.string (D.errorToString err) ) ])

        Ok "codes" ->
            case D.decodeValue (D.field "texts" (D.list D.string)) value of
                Ok texts ->
                    report
                        (E.object
                            [ ( "all", E.list (ErrorCode.toString >> E.string) ErrorCode.all )
                            , ( "decoded", E.list (decodeCode >> E.string) texts )
                            , ( "known", E.list (ErrorCode.fromString >> (/=) Nothing >> E.bool) texts )
                            ]
                        )

                Err err ->
                    report (E.object [ ( "badCommand", E.string (D.errorToString err) ) ])

        Ok "encode" ->
            report (Logsync.encodeAction "todo/added" [ ( "type", E.string "something/else" ), ( "id", E.string "x" ) ])

        _ ->
            report (E.object [ ( "badCommand", E.string "unknown command" ) ])


decodeCode : String -> String
decodeCode text =
    case D.decodeValue ErrorCode.decoder (E.string text) of
        Ok code ->
            ErrorCode.toString code

        Err err ->
            D.errorToString err


encodeEvent : Logsync.Event (List String) -> E.Value
encodeEvent event =
    case event of
        StateChanged items ->
            E.object [ ( "event", E.string "state" ), ( "items", E.list E.string items ) ]

        StatusChanged status ->
            E.object
                [ ( "event", E.string "status" )
                , ( "online", E.bool status.online )
                , ( "offset", E.int status.offset )
                , ( "head", E.int status.head )
                , ( "pending", E.int status.pending )
                , ( "lastError", Maybe.withDefault E.null (Maybe.map encodeError status.lastError) )
                , ( "clientId", Maybe.withDefault E.null (Maybe.map E.string status.clientId) )
                , ( "needsToken", E.bool status.needsToken )
                , ( "synced", E.bool (Logsync.isSynced status) )
                ]

        ActionRejected rejection ->
            E.object
                [ ( "event", E.string "rejected" )
                , ( "action", rejection.action )
                , ( "code", E.string (ErrorCode.toString rejection.code) )
                , ( "message", E.string rejection.message )
                ]

        ErrorReported error ->
            E.object [ ( "event", E.string "error" ), ( "error", encodeError error ) ]

        DecodeFailed portName _ ->
            E.object [ ( "event", E.string "decodeFailed" ), ( "port", E.string portName ) ]


encodeViewEvent : Logsync.View.Event Counts -> E.Value
encodeViewEvent event =
    case event of
        Logsync.View.ResultChanged counts ->
            E.object
                [ ( "event", E.string "viewResult" )
                , ( "all", E.int counts.all )
                , ( "completed", E.int counts.completed )
                ]

        Logsync.View.StatusChanged status ->
            E.object
                [ ( "event", E.string "viewStatus" )
                , ( "online", E.bool status.online )
                , ( "offset", E.int status.offset )
                , ( "hydrated", E.bool status.hydrated )
                , ( "lastError", Maybe.withDefault E.null (Maybe.map encodeError status.lastError) )
                , ( "needsToken", E.bool status.needsToken )
                ]

        Logsync.View.DecodeFailed which _ ->
            E.object [ ( "event", E.string "viewDecodeFailed" ), ( "which", E.string which ) ]


encodeError : Logsync.Error -> E.Value
encodeError error =
    E.object [ ( "code", E.string (ErrorCode.toString error.code) ), ( "message", E.string error.message ) ]
