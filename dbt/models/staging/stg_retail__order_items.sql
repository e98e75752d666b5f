with source as (
    select * from {{ source('retail', 'order_items') }}
),

renamed as (
    select
        cast(order_item_id as bigint) as order_item_id,
        cast(order_id as bigint) as order_id,
        cast(product_id as bigint) as product_id,
        cast(quantity as integer) as quantity,
        cast(unit_price as numeric(12, 2)) as unit_price,
        cast(created_at as timestamp) as created_at,
        cast(updated_at as timestamp) as updated_at,
        _airbyte_extracted_at as loaded_at
    from source
)

select * from renamed
