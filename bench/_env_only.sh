# Sourced by the bench scripts that are configured by environment variables only:
# `env_only_arguments "$0" "$@"` prints the script's header comment on -h/--help and exits, and
# refuses any other argument (it would be ignored, and the trainings would start).
env_only_arguments() {
    local script=$1
    shift
    [ $# -eq 0 ] && return 0
    case $1 in
        -h | --help)
            awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$script"
            exit 0
            ;;
        *)
            echo "$script takes no arguments (got $1): it is configured by environment variables, see --help" >&2
            exit 2
            ;;
    esac
}
