with source as (
    select * from {{ source('retail', 'orders') }}
),

renamed as (
    select
        cast(order_id as bigint) as order_id,
        cast(customer_id as bigint) as customer_id,
        cast(channel as varchar) as channel,
        cast(store_id as bigint) as store_id,
        cast(status as varchar) as status,
        cast(ordered_at as timestamp) as ordered_at,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        _airbyte_extracted_at as loaded_at
    from source
)

select * from renamed
