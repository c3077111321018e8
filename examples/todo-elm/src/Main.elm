port module Main exposing (main)

{-| TodoMVC in Elm on a Logsync store.

The store (in JavaScript, see main.js) is the source of truth: this program
sends actions out with `Logsync.send` and receives the state, the sync
status, refused actions and errors as typed `Logsync.Event`s (the ports are
in Logsync.elm). It keeps only what is this window's own business: the text
being typed, the todo being edited and the filter.

Beside it, a view store follows the server's `counts` view of the list
(`{"all", "completed"}`, computed by the server on the state it has
confirmed) through the two ports below, as `Logsync.View.Event`s: the
status bar shows what the server has, while the footer counts this
window's own state (which includes its changes the server has not
confirmed yet).

-}

import Browser
import Browser.Dom as Dom
import Html exposing (Html, aside, button, div, footer, h1, header, input, label, li, p, section, span, strong, text, ul)
import Html.Attributes exposing (attribute, autofocus, checked, class, classList, for, hidden, id, maxlength, placeholder, title, type_, value)
import Html.Events exposing (on, onBlur, onCheck, onClick, onDoubleClick, onInput)
import Html.Keyed as Keyed
import Html.Lazy exposing (lazy2)
import Json.Decode as D
import Json.Encode as E
import Logsync exposing (Event(..))
import Logsync.ErrorCode as ErrorCode exposing (ErrorCode(..))
import Logsync.View
import Task



-- PORTS


{-| The `counts` view's result (connectElmViewPorts' `resultPort`).
-}
port serverCounts : (D.Value -> msg) -> Sub msg


{-| The `counts` view store's status (`statusPort`).
-}
port serverCountsStatus : (D.Value -> msg) -> Sub msg



-- MODEL


type alias Todo =
    { id : String
    , text : String
    , completed : Bool
    }


{-| Longest todo text (the shared reducer cuts longer text to this).
-}
maxText : Int
maxText =
    500


type Filter
    = All
    | Active
    | Completed


{-| The server's `counts` view (../todo-react/src/todos.js).
-}
type alias Counts =
    { all : Int
    , completed : Int
    }


type alias Flags =
    { room : String
    , idPrefix : String
    }


type alias Model =
    { todos : List Todo
    , status : Logsync.Status
    , field : String
    , editing : Maybe ( String, String )
    , filter : Filter
    , room : String
    , idPrefix : String
    , nextId : Int
    , rejection : Maybe Logsync.Rejection
    , problem : Maybe String
    , serverCounts : Maybe Counts
    , serverCountsStatus : Logsync.View.Status
    }


init : Flags -> ( Model, Cmd Msg )
init flags =
    ( { todos = []
      , status = Logsync.initialStatus
      , field = ""
      , editing = Nothing
      , filter = All
      , room = flags.room
      , idPrefix = flags.idPrefix
      , nextId = 1
      , rejection = Nothing
      , problem = Nothing
      , serverCounts = Nothing
      , serverCountsStatus = Logsync.View.initialStatus
      }
    , Cmd.none
    )



-- UPDATE


type Msg
    = FromLogsync (Logsync.Event (List Todo))
    | FromServerCounts (Logsync.View.Event Counts)
    | UpdateField String
    | Add
    | Toggle String
    | Delete String
    | StartEdit String String
    | UpdateEdit String
    | CommitEdit
    | CancelEdit
    | ToggleAll Bool
    | ClearCompleted
    | SetFilter Filter
    | DismissRejection
    | DismissProblem
    | NoOp


update : Msg -> Model -> ( Model, Cmd Msg )
update msg model =
    case msg of
        FromLogsync event ->
            ( fromLogsync event model, Cmd.none )

        FromServerCounts event ->
            ( fromServerCounts event model, Cmd.none )

        UpdateField field ->
            ( { model | field = field }, Cmd.none )

        Add ->
            let
                trimmed =
                    String.trim model.field
            in
            if String.isEmpty trimmed then
                ( model, Cmd.none )

            else
                ( { model | field = "", nextId = model.nextId + 1 }
                , Logsync.send "todo/added"
                    [ ( "id", E.string (model.idPrefix ++ "-" ++ String.fromInt model.nextId) )
                    , ( "text", E.string trimmed )
                    ]
                )

        Toggle todoId ->
            ( model, Logsync.send "todo/toggled" [ ( "id", E.string todoId ) ] )

        Delete todoId ->
            ( model, Logsync.send "todo/deleted" [ ( "id", E.string todoId ) ] )

        StartEdit todoId current ->
            ( { model | editing = Just ( todoId, current ) }
            , Task.attempt (\_ -> NoOp) (Dom.focus ("edit-" ++ todoId))
            )

        UpdateEdit draft ->
            case model.editing of
                Just ( todoId, _ ) ->
                    ( { model | editing = Just ( todoId, draft ) }, Cmd.none )

                Nothing ->
                    ( model, Cmd.none )

        CommitEdit ->
            case model.editing of
                Just ( todoId, draft ) ->
                    let
                        trimmed =
                            String.trim draft
                    in
                    ( { model | editing = Nothing }
                    , if String.isEmpty trimmed then
                        Logsync.send "todo/deleted" [ ( "id", E.string todoId ) ]

                      else if List.any (\todo -> todo.id == todoId && todo.text == trimmed) model.todos then
                        -- unchanged: no event in the shared log
                        Cmd.none

                      else
                        Logsync.send "todo/edited" [ ( "id", E.string todoId ), ( "text", E.string trimmed ) ]
                    )

                Nothing ->
                    ( model, Cmd.none )

        CancelEdit ->
            ( { model | editing = Nothing }, Cmd.none )

        ToggleAll completed ->
            ( model, Logsync.send "todos/allToggled" [ ( "completed", E.bool completed ) ] )

        ClearCompleted ->
            ( model, Logsync.send "todos/completedCleared" [] )

        SetFilter filter ->
            ( { model | filter = filter }, Cmd.none )

        DismissRejection ->
            ( { model | rejection = Nothing }, Cmd.none )

        DismissProblem ->
            ( { model | problem = Nothing }, Cmd.none )

        NoOp ->
            ( model, Cmd.none )


fromLogsync : Logsync.Event (List Todo) -> Model -> Model
fromLogsync event model =
    case event of
        StateChanged todos ->
            { model | todos = todos }

        StatusChanged status ->
            { model | status = status }

        ActionRejected rejection ->
            { model | rejection = Just rejection }

        ErrorReported error ->
            { model | problem = Just (error.message ++ " (" ++ ErrorCode.toString error.code ++ ")") }

        DecodeFailed portName err ->
            { model | problem = Just ("Unexpected value on port " ++ portName ++ ": " ++ D.errorToString err) }


fromServerCounts : Logsync.View.Event Counts -> Model -> Model
fromServerCounts event model =
    case event of
        Logsync.View.ResultChanged counts ->
            { model | serverCounts = Just counts }

        Logsync.View.StatusChanged status ->
            { model | serverCountsStatus = status }

        Logsync.View.DecodeFailed which err ->
            { model | problem = Just ("Unexpected " ++ which ++ " of the server's counts: " ++ D.errorToString err) }



-- DECODERS


{-| The shared reducer's state (../todo-react/src/todos.js).
-}
stateDecoder : D.Decoder (List Todo)
stateDecoder =
    D.field "todos"
        (D.list
            (D.map3 Todo
                (D.field "id" D.string)
                (D.field "text" D.string)
                (D.field "completed" D.bool)
            )
        )


countsDecoder : D.Decoder Counts
countsDecoder =
    D.map2 Counts
        (D.field "all" D.int)
        (D.field "completed" D.int)



-- VIEW


view : Model -> Html Msg
view model =
    div []
        [ section [ class "todoapp" ]
            [ header []
                [ h1 [] [ text "todos" ]
                , input
                    [ class "new-todo"
                    , attribute "data-testid" "new-todo"
                    , placeholder "What needs to be done?"
                    , attribute "aria-label" "New todo"
                    , autofocus True
                    , maxlength maxText
                    , value model.field
                    , onInput UpdateField
                    , onKey [ ( "Enter", Add ) ]
                    ]
                    []
                ]
            , viewMain model
            , viewFooter model
            ]
        , viewStatus model
        , footer [ class "info" ]
            [ p [] [ text "Double-click to edit a todo" ]
            , p [] [ text ("Room " ++ model.room ++ ": open this page in another window and watch changes sync. It keeps working offline.") ]
            ]
        ]


viewMain : Model -> Html Msg
viewMain model =
    let
        allCompleted =
            List.all .completed model.todos

        visible =
            List.filter (isVisible model.filter) model.todos
    in
    section [ class "main", hidden (List.isEmpty model.todos) ]
        [ input
            [ id "toggle-all"
            , class "toggle-all"
            , type_ "checkbox"
            , checked allCompleted
            , onCheck ToggleAll
            ]
            []
        , label [ for "toggle-all" ] [ text "Mark all as complete" ]
        , Keyed.ul [ class "todo-list", attribute "data-testid" "todo-list" ]
            (List.map (\todo -> ( todo.id, lazy2 viewTodo (editingText model todo.id) todo )) visible)
        ]


editingText : Model -> String -> Maybe String
editingText model todoId =
    case model.editing of
        Just ( editingId, draft ) ->
            if editingId == todoId then
                Just draft

            else
                Nothing

        Nothing ->
            Nothing


viewTodo : Maybe String -> Todo -> Html Msg
viewTodo editing todo =
    li
        [ classList [ ( "completed", todo.completed ), ( "editing", editing /= Nothing ) ]
        , attribute "data-testid" "todo-item"
        ]
        [ div [ class "view" ]
            [ input
                [ class "toggle"
                , type_ "checkbox"
                , checked todo.completed
                , onClick (Toggle todo.id)
                ]
                []
            , label [ attribute "data-testid" "todo-title", onDoubleClick (StartEdit todo.id todo.text) ] [ text todo.text ]
            , button [ class "destroy", onClick (Delete todo.id) ] []
            ]
        , case editing of
            Just draft ->
                input
                    [ class "edit"
                    , id ("edit-" ++ todo.id)
                    , value draft
                    , maxlength maxText
                    , onInput UpdateEdit
                    , onBlur CommitEdit
                    , onKey [ ( "Enter", CommitEdit ), ( "Escape", CancelEdit ) ]
                    ]
                    []

            Nothing ->
                text ""
        ]


viewFooter : Model -> Html Msg
viewFooter model =
    let
        active =
            List.length (List.filter (not << .completed) model.todos)

        completed =
            List.length model.todos - active
    in
    footer [ class "footer", hidden (List.isEmpty model.todos) ]
        [ span [ class "todo-count", attribute "data-testid" "todo-count" ]
            [ strong [] [ text (String.fromInt active) ]
            , text
                (if active == 1 then
                    " item left"

                 else
                    " items left"
                )
            ]
        , ul [ class "filters" ]
            [ filterButton model.filter All "All"
            , filterButton model.filter Active "Active"
            , filterButton model.filter Completed "Completed"
            ]
        , button [ class "clear-completed", hidden (completed == 0), onClick ClearCompleted ] [ text "Clear completed" ]
        ]


filterButton : Filter -> Filter -> String -> Html Msg
filterButton current filter name =
    li [] [ button [ classList [ ( "selected", current == filter ) ], onClick (SetFilter filter) ] [ text name ] ]


viewStatus : Model -> Html Msg
viewStatus model =
    let
        status =
            model.status

        pendingText =
            if status.pending == 0 then
                "all changes synced"

            else if status.pending == 1 then
                "1 pending change"

            else
                String.fromInt status.pending ++ " pending changes"
    in
    aside
        [ classList [ ( "status", True ), ( "online", status.online ), ( "offline", not status.online ) ]
        , attribute "data-testid" "status"
        , attribute "data-online" (boolText status.online)
        , attribute "data-pending" (String.fromInt status.pending)
        , attribute "data-offset" (String.fromInt status.offset)
        ]
        [ span [ class "dot" ] []
        , strong []
            [ text
                (if status.online then
                    "Online"

                 else
                    "Offline"
                )
            ]
        , span [ attribute "data-testid" "pending" ] [ text pendingText ]
        , span [ class "muted", title "Last event applied / last event on the server" ]
            [ text
                ("offset "
                    ++ String.fromInt status.offset
                    ++ (if status.head > status.offset then
                            " of " ++ String.fromInt status.head

                        else
                            ""
                       )
                )
            ]
        , span [ class "muted" ] [ text ("room " ++ model.room) ]
        , viewServerCounts model.serverCounts model.serverCountsStatus
        , case ( status.online, status.lastError ) of
            ( False, Just error ) ->
                span [ class "error", title error.message, attribute "data-testid" "last-error" ] [ text (ErrorCode.toString error.code) ]

            _ ->
                text ""
        , if status.needsToken then
            span [ class "error", attribute "role" "alert", attribute "data-testid" "needs-token" ]
                [ text "Sign in again: the server refused this window's token" ]

          else
            text ""
        , case model.rejection of
            Just rejection ->
                span
                    [ class "error"
                    , attribute "role" "alert"
                    , attribute "data-testid" "rejection"
                    , attribute "data-code" (ErrorCode.toString rejection.code)
                    ]
                    [ text (rejectionText rejection)
                    , button [ onClick DismissRejection, attribute "aria-label" "Dismiss" ] [ text "×" ]
                    ]

            Nothing ->
                text ""
        , case model.problem of
            Just problem ->
                span [ class "error", attribute "data-testid" "problem" ]
                    [ text problem
                    , button [ onClick DismissProblem, attribute "aria-label" "Dismiss" ] [ text "×" ]
                    ]

            Nothing ->
                text ""
        ]


{-| The server's `counts` view: what the server has confirmed, live while
its feed is open, else the last result seen (kept in IndexedDB, so it
shows offline too). Nothing before a first result.
-}
viewServerCounts : Maybe Counts -> Logsync.View.Status -> Html Msg
viewServerCounts counts status =
    case counts of
        Just { all, completed } ->
            span
                [ class "muted"
                , attribute "data-testid" "server-counts"
                , attribute "data-all" (String.fromInt all)
                , attribute "data-completed" (String.fromInt completed)
                , attribute "data-offset" (String.fromInt status.offset)
                , attribute "data-online" (boolText status.online)
                , title ("The server's counts view at offset " ++ String.fromInt status.offset)
                ]
                [ text
                    ((if status.online then
                        "on the server: "

                      else
                        "last seen on the server: "
                     )
                        ++ plural all "todo"
                        ++ ", "
                        ++ String.fromInt completed
                        ++ " completed"
                    )
                ]

        Nothing ->
            text ""


plural : Int -> String -> String
plural n noun =
    String.fromInt n
        ++ " "
        ++ noun
        ++ (if n == 1 then
                ""

            else
                "s"
           )


{-| What a refused change means for the person who made it.
-}
rejectionText : Logsync.Rejection -> String
rejectionText rejection =
    let
        reason =
            case rejection.code of
                PayloadTooLarge ->
                    "it is too long for the server"

                RateLimited ->
                    "too many changes at once; try again in a moment"

                Forbidden ->
                    "this list is read-only for you"

                _ ->
                    rejection.message
    in
    "Not saved: " ++ reason ++ " (" ++ ErrorCode.toString rejection.code ++ ")"


boolText : Bool -> String
boolText b =
    if b then
        "true"

    else
        "false"


isVisible : Filter -> Todo -> Bool
isVisible filter todo =
    case filter of
        All ->
            True

        Active ->
            not todo.completed

        Completed ->
            todo.completed


{-| Fires the message of the first listed key that is pressed.
-}
onKey : List ( String, Msg ) -> Html.Attribute Msg
onKey bindings =
    on "keydown"
        (D.field "key" D.string
            |> D.andThen
                (\key ->
                    case List.filter (\( k, _ ) -> k == key) bindings of
                        ( _, msg ) :: _ ->
                            D.succeed msg

                        [] ->
                            D.fail "not a bound key"
                )
        )



-- MAIN


main : Program Flags Model Msg
main =
    Browser.element
        { init = init
        , update = update
        , view = view
        , subscriptions =
            \_ ->
                Sub.batch
                    [ Logsync.subscriptions stateDecoder FromLogsync
                    , Logsync.View.subscriptions
                        { result = serverCounts, status = serverCountsStatus }
                        countsDecoder
                        FromServerCounts
                    ]
        }
